"""The web demo: chat with a loaded MG-LLaVA about an uploaded image or video, its object boxes drawn.

One :class:`~mg_llava.inference.ChatSession` per browser tab (a ``gr.State``: each user has their own conversation),
built when the upload or the box settings change: the image (or the video's sampled frames) is shown with the boxes
the model gets, i.e. after the load-time box rules, mapped back to original pixels. By default the boxes are the box
file's entry for the upload when it has one, else found on the fly. Answers stream token by token; the final text is
the session's answer, the same string ``tools/chat.py`` returns. Every failure (no upload, an unreadable file, a box
file without the image's entry, a model that did not load) is shown as a one-line message in the page.
"""
import os.path as osp
import threading
from typing import List, Optional, Tuple

import gradio as gr
from gradio.themes.utils.fonts import LocalFont
from PIL import Image
from transformers import TextIteratorStreamer

from mg_llava.boxgen.draw import draw_boxes, make_grid
from mg_llava.dataset import MissingBoxEntryError, entry_for_file, load_box_file, read_video
from mg_llava.dataset.box_table import find_entry
from mg_llava.dataset.image_views import ViewGeometry
from mg_llava.inference.chat import ChatSession
from mg_llava.inference.preprocess import decode_image

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
AUTO, BOX_FILE, ON_THE_FLY, NO_BOXES = "box file, else found on the fly", "box file", "found on the fly", "none"
# the sources' own names for the file being read, which the page replaces by the upload's name
WHERE = ("chat image: ", "chat video: ")


class DemoError(Exception):
    """A problem with the user's input, shown in the page."""


def original_boxes(boxes, geometry: ViewGeometry) -> List[List[float]]:
    """(N, 4) xyxy boxes in high-res input pixels -> original-image pixels (``x_orig = x_high / scale - pad``)."""
    pad = (geometry.pad_x, geometry.pad_y, geometry.pad_x, geometry.pad_y)
    return [[float(v) / geometry.scale - p for v, p in zip(box, pad)] for box in boxes.tolist()]


def boxes_picture(image: Image.Image, boxes, geometry: ViewGeometry) -> Image.Image:
    """``image`` with the model's boxes (high-res input pixels) drawn, numbered in the model's order."""
    record = dict(boxes=original_boxes(boxes, geometry), labels=[f"#{k + 1}" for k in range(len(boxes))])
    return draw_boxes(image, record, max_boxes=len(boxes))


def box_key(table, name: str, box_id: str, video: bool) -> str:
    """The entry of ``table`` for the upload ``name``: ``box_id``, the only entry, or the file name (as chat.py)."""
    try:
        return entry_for_file(table, name, box_id, video=video)
    except MissingBoxEntryError as err:
        raise DemoError(f"box file {osp.basename(table.path)} has no {'video ' if video else ''}entry "
                        f"{err.wanted!r} for {name}; give its id") from None


def one_line(err, path: str, name: str) -> str:
    """``err`` as the page shows it: one line that names the upload once, by its name (not the server's copy at
    ``path``); the decoders' own mentions of the file are dropped."""
    text = " ".join(str(err).split()).replace(path, name)
    for where in WHERE:
        text = text.replace(where, "")
    text = text.replace(f"{name}: ", "").replace(f" '{name}'", "")
    return f"{name}: {text}"


class WebDemo:
    """The page and its callbacks.

    Args:
        loaded: a :class:`~mg_llava.inference.LoadedModel`, or None when loading failed.
        load_error: why the model did not load (shown in the page instead of answers).
        box_generator: a :class:`~mg_llava.boxgen.BoxGenerator` for boxes found on the fly (``--detector``).
        boxes: a box file on the server, used for uploads when the page gives none.
        max_new_tokens, temperature, top_p: the initial generation settings (greedy at temperature 0).
    """

    def __init__(self, loaded=None, load_error: Optional[str] = None, box_generator=None,
                 boxes: Optional[str] = None, max_new_tokens: int = 512, temperature: float = 0.0,
                 top_p: float = 1.0):
        if loaded is None and load_error is None:
            raise ValueError("give a loaded model or the reason it did not load")
        self.loaded = loaded
        self.load_error = load_error
        self.box_generator = box_generator
        self.boxes = boxes
        self.settings = (max_new_tokens, temperature, top_p)

    # --------------------------------------------------------------------------------------------- sessions
    def box_source(self, mode: str, name: str, box_file: Optional[str], box_id: str, video: bool):
        """What :class:`ChatSession` takes as ``boxes`` for the upload ``name`` under ``mode``, and where they come
        from (for the status line)."""
        if mode == NO_BOXES:
            return None, "no boxes"
        if mode == ON_THE_FLY:
            return self.require_generator(), "found on the fly"
        path = box_file or self.boxes
        if path is None:
            if mode == AUTO:
                return self.auto_generator()
            raise DemoError("upload a box file (or choose boxes 'found on the fly' or 'none')")
        try:
            table = load_box_file(path)
        except (OSError, ValueError) as err:
            raise DemoError(one_line(err, path, f"box file {osp.basename(path)}")) from err
        box_id = (box_id or "").strip()
        if mode == AUTO and not box_id:  # only the entry named by the file counts: never "the only entry"
            key = find_entry(table, [name, osp.splitext(name)[0]] if video else [osp.splitext(name)[0]], video)
            if key is None:
                return self.auto_generator(f"not in box file {osp.basename(path)}")
        else:
            key = box_key(table, name, box_id, video)
        return (table, key), f"box file {osp.basename(path)}, entry {key!r}"

    def require_generator(self):
        if self.box_generator is None:
            raise DemoError("boxes found on the fly need a detector: start the demo with --detector (and --tagger)")
        return self.box_generator

    def auto_generator(self, why: str = "no box file"):
        """Boxes found on the fly for an upload without a box-file entry, or none when there is no detector."""
        if self.box_generator is None:
            return None, f"{why} and no --detector: no boxes"
        return self.box_generator, f"{why}: found on the fly"

    def new_session(self, upload: Optional[str], mode: str, box_file: Optional[str],
                    box_id: str) -> Tuple[ChatSession, Image.Image, str]:
        """A session about the uploaded file (gradio's copy, under the upload's own name), the picture of its boxes
        and a status line."""
        if self.loaded is None:
            raise DemoError(self.load_error)
        if upload is None:
            raise DemoError("no image or video: upload one first")
        path, name = upload, osp.basename(upload)
        video = name.lower().endswith(VIDEO_EXTENSIONS)
        boxes, source = self.box_source(mode, name, box_file, box_id, video)
        try:
            if video:
                session = ChatSession(self.loaded, video=path, boxes=boxes)
                frames = read_video(path, self.loaded.preprocessor.num_frames).frames
                panels = [(boxes_picture(frame, b, views.geometry), f"frame {i}: {len(b)} boxes") for frame, b, views, i
                          in zip(frames, session.video.boxes, session.video.frames, session.video.indices)]
                picture = make_grid(panels, cell=256, cols=4)
                status = f"{name}: frames {session.video.indices}, {session.num_boxes} object boxes ({source})"
            else:
                session = ChatSession(self.loaded, image=path, boxes=boxes)
                image, _ = decode_image(path, where=name)
                picture = boxes_picture(image, session.image.boxes, session.image.views.geometry)
                status = f"{name}: {session.num_boxes} object boxes ({source})"
        except Exception as err:  # unreadable file, bad boxes, a failing detector: shown in the page
            raise DemoError(one_line(err, path, name)) from err
        return session, picture, status

    # --------------------------------------------------------------------------------------------- callbacks
    def on_upload(self, upload, mode, box_file, box_id):
        """Upload or box settings changed: a new session (empty history) and its picture."""
        if upload is None:
            return None, None, [], ""
        try:
            session, picture, status = self.new_session(upload, mode, box_file, box_id)
        except DemoError as err:
            return None, None, [], error_text(err)
        return session, picture, [], status

    def on_ask(self, session, upload, mode, box_file, box_id, question, max_new_tokens, temperature, top_p):
        """Stream the answer to ``question``: yields (session, picture, chat, status, question box).

        The chat shown is rebuilt from the session's plain-text history on every update (gradio renders the
        chatbot's messages to HTML in place).
        """
        question = (question or "").strip()
        picture = gr.update()
        if not question:
            yield session, picture, turns(session), error_text("type a question"), question
            return
        try:
            if session is None:
                session, picture, _ = self.new_session(upload, mode, box_file, box_id)
        except DemoError as err:
            yield None, picture, [], error_text(err), question
            return
        session.max_new_tokens, session.temperature = int(max_new_tokens), float(temperature)
        session.top_p = float(top_p)
        failure = []
        for partial in self.stream(session, question, failure):
            yield session, picture, turns(session) + message_pair(question, partial), "answering...", ""
            picture = gr.update()
        if failure:
            yield session, picture, turns(session), error_text(failure[0]), question
            return
        yield session, picture, turns(session), status_done(session), ""

    def stream(self, session: ChatSession, question: str, failure: list):
        """Partial answers while ``session.ask`` runs in a thread; appends the error to ``failure`` if it fails."""
        streamer = TextIteratorStreamer(self.loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)
        session.streamer = streamer

        def ask():
            try:
                session.ask(question)
            except Exception as err:  # shown in the page; the end signal unblocks the reader below
                failure.append(f"generation failed: {err!r}")
                streamer.end()

        thread = threading.Thread(target=ask, daemon=True)
        thread.start()
        text = ""
        for piece in streamer:
            if piece:  # the streamer also hands out empty strings while a word is incomplete
                text += piece
                yield text
        thread.join()
        session.streamer = None

    @staticmethod
    def on_clear(session):
        if session is not None:
            session.reset()
        return session, [], "history cleared"

    # --------------------------------------------------------------------------------------------- page
    def build(self, concurrency: int = 1) -> gr.Blocks:
        """The page; ``concurrency`` events (answers, uploads) run at once, the others wait in gradio's queue."""
        max_new_tokens, temperature, top_p = self.settings
        box_modes = [AUTO, BOX_FILE, ON_THE_FLY, NO_BOXES]
        # the default theme's font comes from Google's servers; a lab server may have no internet
        theme = gr.themes.Default(font=[LocalFont("IBM Plex Sans"), "ui-sans-serif", "sans-serif"])
        with gr.Blocks(title="MG-LLaVA", analytics_enabled=False, theme=theme) as page:  # no telemetry calls
            gr.Markdown("# MG-LLaVA\nUpload an image or a video, choose where its object boxes come from, and ask.")
            if self.load_error:
                gr.Markdown(error_text(f"the model did not load: {self.load_error}"), elem_id="load-error")
            session = gr.State(None)
            with gr.Row():
                with gr.Column(scale=1):
                    upload = gr.File(label="Image or video", file_types=["image", "video"], elem_id="upload")
                    # no label badge: it would cover the caption of a box at the image's top-left corner; PNG: the
                    # picture is shown as drawn (gradio's default, WebP, is lossy)
                    picture = gr.Image(label="What the model sees: the image and its object boxes", type="pil",
                                       format="png", show_label=False, interactive=False, elem_id="picture")
                    with gr.Accordion("Object boxes", open=True):
                        mode = gr.Radio(box_modes, value=AUTO, show_label=False, elem_id="box-mode")
                        box_file = gr.File(label="Box file (released format; default: the server's --boxes)",
                                           file_types=[".json"], elem_id="box-file")
                        box_id = gr.Textbox(label="Box entry id (default: the file name; in 'box file' mode also "
                                                  "the only entry)", elem_id="box-id")
                with gr.Column(scale=1):
                    chat = gr.Chatbot(label="Chat", type="messages", elem_id="chat")
                    status = gr.Markdown(elem_id="status")
                    question = gr.Textbox(label="Question", placeholder="Ask about the image", elem_id="question")
                    with gr.Row():
                        send = gr.Button("Send", variant="primary", elem_id="send")
                        clear = gr.Button("Clear history", elem_id="clear")
                    with gr.Accordion("Generation settings", open=False):
                        new_tokens = gr.Slider(1, 2048, value=max_new_tokens, step=1, label="Max new tokens",
                                               elem_id="max-new-tokens")
                        temp = gr.Slider(0.0, 2.0, value=temperature, step=0.05, label="Temperature (0 = greedy)")
                        nucleus = gr.Slider(0.05, 1.0, value=top_p, step=0.05, label="Top-p")
            box_inputs = [upload, mode, box_file, box_id]
            # change events run once more after a pending one with the latest value ("always_last"): an upload
            # made while the previous one is being prepared is not lost
            for trigger in (upload.change, mode.change, box_file.change, box_id.submit):
                trigger(self.on_upload, box_inputs, [session, picture, chat, status])
            ask_inputs = [session, *box_inputs, question, new_tokens, temp, nucleus]
            ask_outputs = [session, picture, chat, status, question]
            send.click(self.on_ask, ask_inputs, ask_outputs)
            question.submit(self.on_ask, ask_inputs, ask_outputs)
            clear.click(self.on_clear, [session], [session, chat, status])
            chat.clear(self.on_clear, [session], [session, chat, status])  # the chat's own bin icon: the same
        return page.queue(default_concurrency_limit=concurrency)


def turns(session: Optional[ChatSession]) -> List[dict]:
    """The chatbot's value: a fresh list of user/assistant messages from the session's history."""
    return [] if session is None else [m for q, a in session.history for m in message_pair(q, a)]


def message_pair(question: str, answer: str) -> List[dict]:
    return [dict(role="user", content=question), dict(role="assistant", content=answer)]


def error_text(err) -> str:
    return f"**Error:** {err}"


def status_done(session: ChatSession) -> str:
    turns = len(session.history)
    return f"{turns} turn{'s' if turns != 1 else ''}, {session.num_boxes} object boxes"


__all__ = ["WebDemo", "boxes_picture", "original_boxes"]
