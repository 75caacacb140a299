"""The web demo: chat with a loaded MG-LLaVA about an uploaded image or video, its object boxes drawn.

One :class:`~mg_llava.inference.ChatSession` per browser tab (a ``gr.State``), built when the upload or the box
settings change: the image (or the video's sampled frames) is shown with the boxes the model gets, i.e. after the
load-time box rules, mapped back to original pixels. Answers stream token by token; the final text is the session's
answer, the same string ``tools/chat.py`` returns. Every failure (no upload, an unreadable file, a box file without
the image's entry, a model that did not load) is shown as a message in the page.
"""
import os.path as osp
import threading
from typing import List, Optional, Tuple

import gradio as gr
from PIL import Image
from transformers import TextIteratorStreamer

from mg_llava.boxgen.draw import draw_boxes, make_grid
from mg_llava.dataset import MissingBoxEntryError, entry_for_file, load_box_file, read_video
from mg_llava.dataset.image_views import ViewGeometry
from mg_llava.inference.chat import ChatSession
from mg_llava.inference.preprocess import decode_image

from .gradio_compat import patch_gradio

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
BOX_FILE, ON_THE_FLY, NO_BOXES = "box file", "found on the fly", "none"


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
    def box_source(self, mode: str, name: str, box_file, box_id: str, video: bool):
        """What :class:`ChatSession` takes as ``boxes`` for the upload ``name`` under ``mode``."""
        if mode == NO_BOXES:
            return None
        if mode == ON_THE_FLY:
            if self.box_generator is None:
                raise DemoError("boxes found on the fly need a detector: start the demo with --detector (and "
                                "--tagger)")
            return self.box_generator
        path = box_file.name if box_file is not None else self.boxes
        if path is None:
            raise DemoError("upload a box file (or choose boxes 'found on the fly' or 'none')")
        try:
            table = load_box_file(path)
        except (OSError, ValueError) as err:
            shown = getattr(box_file, "orig_name", None) or osp.basename(path)
            raise DemoError(f"box file {shown}: {err}") from err
        return table, box_key(table, name, (box_id or "").strip(), video)

    def new_session(self, upload, mode: str, box_file, box_id: str) -> Tuple[ChatSession, Image.Image, str]:
        """A session about the upload, the picture of its boxes and a status line."""
        if self.loaded is None:
            raise DemoError(self.load_error)
        if upload is None:
            raise DemoError("no image or video: upload one first")
        path, name = upload.name, getattr(upload, "orig_name", None) or osp.basename(upload.name)
        video = name.lower().endswith(VIDEO_EXTENSIONS)
        boxes = self.box_source(mode, name, box_file, box_id, video)
        try:
            if video:
                session = ChatSession(self.loaded, video=path, boxes=boxes)
                frames = read_video(path, self.loaded.preprocessor.num_frames).frames
                panels = [(boxes_picture(frame, b, views.geometry), f"frame {i}: {len(b)} boxes") for frame, b, views, i
                          in zip(frames, session.video.boxes, session.video.frames, session.video.indices)]
                picture = make_grid(panels, cell=256, cols=4)
                status = f"{name}: frames {session.video.indices}, {session.num_boxes} object boxes"
            else:
                session = ChatSession(self.loaded, image=path, boxes=boxes)
                image, _ = decode_image(path, where=name)
                picture = boxes_picture(image, session.image.boxes, session.image.views.geometry)
                status = f"{name}: {session.num_boxes} object boxes"
        except Exception as err:  # unreadable file, bad boxes, a failing detector: shown in the page
            raise DemoError(f"{name}: {err}".replace(path, name)) from err
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
            yield session, picture, turns(session) + [[question, partial]], "answering...", ""
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
    def build(self) -> gr.Blocks:
        patch_gradio()
        max_new_tokens, temperature, top_p = self.settings
        box_modes = [BOX_FILE, ON_THE_FLY, NO_BOXES]
        default_mode = ON_THE_FLY if self.box_generator is not None else (BOX_FILE if self.boxes else NO_BOXES)
        with gr.Blocks(title="MG-LLaVA", analytics_enabled=False) as page:  # no telemetry calls
            gr.Markdown("# MG-LLaVA\nUpload an image or a video, choose where its object boxes come from, and ask.")
            if self.load_error:
                gr.Markdown(error_text(f"the model did not load: {self.load_error}"), elem_id="load-error")
            session = gr.State(None)
            with gr.Row():
                with gr.Column(scale=1):
                    upload = gr.File(label="Image or video", file_types=["image", "video"], elem_id="upload")
                    # no label badge: it would cover the caption of a box at the image's top-left corner
                    picture = gr.Image(label="What the model sees: the image and its object boxes", type="pil",
                                       show_label=False, interactive=False, elem_id="picture")
                    with gr.Accordion("Object boxes", open=True):
                        mode = gr.Radio(box_modes, value=default_mode, show_label=False, elem_id="box-mode")
                        box_file = gr.File(label="Box file (released format; default: the server's --boxes)",
                                           file_types=[".json"], elem_id="box-file")
                        box_id = gr.Textbox(label="Box entry id (default: the only entry, else the file name)",
                                            elem_id="box-id")
                with gr.Column(scale=1):
                    chat = gr.Chatbot(label="Chat", elem_id="chat")
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
            for trigger in (upload.change, mode.change, box_file.change, box_id.submit):
                trigger(self.on_upload, box_inputs, [session, picture, chat, status])
            ask_inputs = [session, *box_inputs, question, new_tokens, temp, nucleus]
            ask_outputs = [session, picture, chat, status, question]
            send.click(self.on_ask, ask_inputs, ask_outputs)
            question.submit(self.on_ask, ask_inputs, ask_outputs)
            clear.click(self.on_clear, [session], [session, chat, status])
        return page.queue()


def turns(session: Optional[ChatSession]) -> List[List[str]]:
    """The chatbot's value: a fresh list of [question, answer] pairs from the session's history."""
    return [] if session is None else [[q, a] for q, a in session.history]


def error_text(err) -> str:
    return f"**Error:** {err}"


def status_done(session: ChatSession) -> str:
    turns = len(session.history)
    return f"{turns} turn{'s' if turns != 1 else ''}, {session.num_boxes} object boxes"


__all__ = ["WebDemo", "boxes_picture", "original_boxes"]
