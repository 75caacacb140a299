"""The web demo as a person uses it: tools/web_demo.py's page serves the trained tiny model on localhost and a real
headless Chromium (Debian's chromium + chromium-driver, driven by selenium; nothing is downloaded) uploads a photo,
asks two questions and reads the answers in the page, which must equal tools/chat.py's for the same input. Also in
the page: bad input and a model that failed to load show a message; clear-history empties the conversation. A video
upload is checked through the page's callbacks.

The screenshot (the image with its boxes and the answers) is saved in the test's tmp dir and copied to
test_artifacts/web_demo.png in the repository root (gitignored).
"""
import base64
import io
import os.path as osp
import shutil
import socket

import pytest
from PIL import Image, ImageChops
from selenium import webdriver  # the dev extra installs it: a missing selenium is an error, not a skip
from selenium.webdriver.chrome.service import Service

from eval_helpers import check_answers_depend_on_the_image
from inference_helpers import MEMORISED
from tool_helpers import ROOT, load_tool

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
# the second question is a trained yes/no question the tiny model gets wrong about the memorised photo ("No"): with
# "How many kinds of objects are marked?" both answers were "a cat", which a constant-answer model also gives
QUESTIONS = (MEMORISED[1], "Is there a cat in the image? Please answer the question with yes or no.")
MAX_NEW_TOKENS = 8
WAIT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def reference_answers(model_paths, trained_checkpoint, tiny_data):
    """tools/chat.py's greedy answers to QUESTIONS (two turns) about the memorised photo and its box-file boxes."""
    return chat_answers(model_paths, trained_checkpoint, tiny_data, MEMORISED[0])


def chat_answers(model_paths, trained_checkpoint, tiny_data, photo):
    """tools/chat.py's two-turn answers to QUESTIONS about the tiny data's ``photo`` (a name) and its box-file boxes."""
    return load_tool("chat").main(["--checkpoint", trained_checkpoint, *model_paths, "--image",
                                   osp.join(tiny_data["image_folder"], f"{photo}.jpg"), "--boxes", tiny_data["boxes"],
                                   "--box-id", photo, "--prompt", QUESTIONS[0], "--prompt", QUESTIONS[1],
                                   "--max-new-tokens", str(MAX_NEW_TOKENS)])


def page_items_check(answer_turns):
    """check_answers_depend_on_the_image on the page test's items (QUESTIONS about the memorised photo, one
    conversation): ``answer_turns(photo)`` -> the two answers; a swap asks them about the rocket photo instead."""
    name = MEMORISED[0]
    right = (MEMORISED[2], "Yes")  # the learned answer; the memorised photo shows a cat

    def answer(photos):
        assert len(set(photos)) == 1, photos  # one conversation: both turns are about one photo
        return answer_turns(photos[0])

    return check_answers_depend_on_the_image(answer, [name, name], lambda i, text: text == right[i], spare=["rocket"])


def test_the_pages_items_have_answers_that_depend_on_the_image(model_paths, trained_checkpoint, tiny_data,
                                                                reference_answers):
    """The page == chat.py comparison below means something only if chat.py's answers on its items depend on the
    photo; a constant-answer (or blind) model fails this check."""
    def answer_turns(photo):
        if photo == MEMORISED[0]:
            return reference_answers
        return chat_answers(model_paths, trained_checkpoint, tiny_data, photo)

    page_items_check(answer_turns)
    for model in (lambda photo: [MEMORISED[2]] * 2, lambda photo: [MEMORISED[2], "No"]):
        with pytest.raises(AssertionError):
            page_items_check(model)


@pytest.fixture(scope="module")
def server(model_paths, trained_checkpoint, tiny_data):
    """tools/web_demo.py's page for the trained tiny model (the tiny box file as its --boxes), served on localhost
    from this process (the model loads in seconds here, not in a fresh interpreter)."""
    web_demo = load_tool("web_demo")
    demo = web_demo.build_demo(web_demo.parse_args(["--checkpoint", trained_checkpoint, *model_paths, "--boxes",
                                                    tiny_data["boxes"], "--max-new-tokens", str(MAX_NEW_TOKENS)]))
    assert demo.load_error is None, demo.load_error
    app, url = serve(demo)
    yield url
    app.close()


def serve(demo):
    app = demo.build()
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True)
    return app, f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("no headless browser (Debian package): apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1300"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


class Page:
    """The demo page in the browser, by the elem_ids mg_llava/web/demo.py gives its components."""

    def __init__(self, driver, url):
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        driver.get(url)
        self.wait = WebDriverWait(driver, WAIT_S)
        self.wait.until(lambda d: d.find_elements("css selector", "#upload input[type=file]"))

    def upload(self, path):
        self.driver.find_element("css selector", "#upload input[type=file]").send_keys(path)

    def ask(self, question):
        box = self.driver.find_element("css selector", "#question textarea")
        box.clear()
        box.send_keys(question)
        self.driver.find_element("id", "send").click()

    def status(self) -> str:
        return self.driver.find_element("id", "status").text

    def wait_status(self, *parts) -> str:
        try:
            self.wait.until(lambda d: all(p in self.status() for p in parts))
        except Exception:
            pytest.fail(f"the page's status never showed {parts}; it shows {self.status()!r}")
        return self.status()

    def bot_messages(self):
        return [m.text for m in self.driver.find_elements("css selector", "#chat .message.bot")]

    def picture(self) -> Image.Image:
        src = self.driver.find_element("css selector", "#picture img").get_attribute("src")
        return Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")


def test_answers_in_the_page_equal_chat_py_and_clear_history_works(browser, server, reference_answers, loaded,
                                                                    tiny_data, tmp_path):
    from mg_llava.dataset import load_box_file
    from mg_llava.inference import ChatSession
    from mg_llava.inference.preprocess import decode_image
    from mg_llava.web.demo import boxes_picture

    page = Page(browser, server)
    photo = osp.join(tiny_data["image_folder"], f"{MEMORISED[0]}.jpg")
    page.upload(photo)
    page.wait_status("chelsea.jpg: 2 object boxes")

    # the picture shown is the photo with the boxes the model gets, drawn
    session = ChatSession(loaded, image=photo, boxes=(load_box_file(tiny_data["boxes"]), MEMORISED[0]))
    image, _ = decode_image(photo)
    expected = boxes_picture(image, session.image.boxes, session.image.views.geometry)
    shown = page.picture()
    assert shown.size == expected.size
    assert ImageChops.difference(shown, expected).getbbox() is None
    assert ImageChops.difference(shown, image).getbbox() is not None  # the boxes are drawn on it

    page.ask(QUESTIONS[0])
    page.wait_status("1 turn,")
    assert page.bot_messages() == reference_answers[:1]
    page.ask(QUESTIONS[1])
    page.wait_status("2 turns,")
    assert page.bot_messages() == reference_answers
    assert reference_answers[0] == MEMORISED[2]  # the trained model's answer, not an empty or an error text

    screenshot = tmp_path / "web_demo.png"
    browser.save_screenshot(str(screenshot))
    artifacts = ROOT / "test_artifacts"
    artifacts.mkdir(exist_ok=True)
    shutil.copy(screenshot, artifacts / "web_demo.png")
    print(f"screenshot: {screenshot} (copied to {artifacts / 'web_demo.png'})")

    browser.find_element("id", "clear").click()
    page.wait_status("history cleared")
    assert page.bot_messages() == []
    page.ask(QUESTIONS[0])  # asked again after the clear: a first turn again, with the first answer
    page.wait_status("1 turn,")
    assert page.bot_messages() == reference_answers[:1]


def test_bad_input_shows_a_message_in_the_page(browser, server, tmp_path):
    page = Page(browser, server)
    page.ask("What is in the image?")
    page.wait_status("Error", "no image or video: upload one first")

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a JPEG at all" * 10)
    page.upload(str(broken))
    page.wait_status("Error", "broken.jpg")
    assert page.bot_messages() == []
    page.ask("What is in the image?")  # the page still answers requests: an error, not a dead server
    page.wait_status("Error", "broken.jpg")


def test_a_model_that_fails_to_load_shows_a_message_in_the_page(browser, model_paths, tmp_path):
    web_demo = load_tool("web_demo")
    missing = str(tmp_path / "missing.pth")
    demo = web_demo.build_demo(web_demo.parse_args(["--checkpoint", missing, *model_paths]))
    assert demo.loaded is None and missing in demo.load_error
    app, url = serve(demo)
    try:
        page = Page(browser, url)
        assert "the model did not load" in browser.find_element("id", "load-error").text
        page.upload(str(ROOT / "mg_llava" / "engine" / "samples" / "chelsea.jpg"))
        page.wait_status("Error", "no checkpoint at", "missing.pth")
    finally:
        app.close()


def test_boxes_are_drawn_in_original_pixels():
    """The picture's boxes: high-res input pixels (x_high = (x_orig + pad) * scale) back to the original image's."""
    import torch

    from mg_llava.dataset.image_views import ViewGeometry
    from mg_llava.web.demo import original_boxes

    geometry = ViewGeometry.for_image(300, 200, 128)  # pad_y 50, scale 128 / 300
    box = [30.0, 20.0, 150.0, 180.0]
    high = torch.tensor([[(box[0] + 0) * geometry.scale, (box[1] + 50) * geometry.scale,
                          (box[2] + 0) * geometry.scale, (box[3] + 50) * geometry.scale]])
    (back,) = original_boxes(high, geometry)
    assert back == pytest.approx(box, abs=1e-4)


def test_a_video_upload_shows_its_frames_and_answers_as_chat_py(loaded, model_paths, trained_checkpoint, tmp_path):
    """The page's callbacks without a browser: a video upload (no boxes) becomes a session over its sampled frames,
    the picture tiles them, and the streamed answer equals `tools/chat.py --video`'s."""
    from types import SimpleNamespace

    from mg_llava.testing.videos import write_video
    from mg_llava.web import WebDemo
    from mg_llava.web.demo import NO_BOXES

    photo = Image.open(ROOT / "mg_llava" / "engine" / "samples" / "chelsea.jpg").convert("RGB").resize((96, 64))
    video = write_video(str(tmp_path / "upload_1a2b.mp4"), [photo.rotate(15 * k) for k in range(4)])
    upload = SimpleNamespace(name=video, orig_name="cat.mp4")  # what gradio's File gives the callbacks
    demo = WebDemo(loaded, max_new_tokens=MAX_NEW_TOKENS)
    session, picture, chat, status = demo.on_upload(upload, NO_BOXES, None, "")
    frames = loaded.preprocessor.num_frames
    assert session.video is not None and len(session.video.frames) == frames
    assert status == f"cat.mp4: frames {session.video.indices}, 0 object boxes" and chat == []
    assert picture.size == (256 * min(frames, 4), (256 + 20) * -(-frames // 4))  # make_grid's tiles

    updates = list(demo.on_ask(session, upload, NO_BOXES, None, "", QUESTIONS[0], MAX_NEW_TOKENS, 0.0, 1.0))
    answer = updates[-1][2][-1][1]
    expected = load_tool("chat").main(["--checkpoint", trained_checkpoint, *model_paths, "--video", video,
                                       "--no-boxes", "--prompt", QUESTIONS[0], "--max-new-tokens",
                                       str(MAX_NEW_TOKENS)])
    assert [answer] == expected
    assert updates[-1][3] == "1 turn, 0 object boxes"


def test_boxes_found_on_the_fly_are_chat_py_s(loaded, model_paths, trained_checkpoint, tiny_models, tiny_data,
                                              capsys):
    """--detector/--tagger as in chat.py (the tiny OWLv2, random weights: the path is what counts): the upload gets
    the boxes chat.py finds for the same image, and the same answer."""
    from types import SimpleNamespace

    from mg_llava.web import WebDemo
    from mg_llava.web.demo import ON_THE_FLY

    box_options = ["--detector", tiny_models["owlv2"], "--tagger", "fixed", "--vocabulary", "cat,dog",
                   "--score-threshold", "0.0"]
    web_demo = load_tool("web_demo")
    generator = web_demo.build_box_generator(web_demo.parse_args(box_options), "cpu")
    demo = WebDemo(loaded, box_generator=generator, max_new_tokens=4)
    photo = osp.join(tiny_data["image_folder"], f"{MEMORISED[0]}.jpg")
    upload = SimpleNamespace(name=photo, orig_name="cat.jpg")
    session, _, _, status = demo.on_upload(upload, ON_THE_FLY, None, "")
    answer = list(demo.on_ask(session, upload, ON_THE_FLY, None, "", QUESTIONS[0], 4, 0.0, 1.0))[-1][2][-1][1]

    capsys.readouterr()
    expected = load_tool("chat").main(["--checkpoint", trained_checkpoint, *model_paths, "--image", photo,
                                       *box_options, "--prompt", QUESTIONS[0], "--max-new-tokens", "4"])
    boxes = int(capsys.readouterr().out.split(": ")[1].split(" object")[0])
    assert boxes > 0 and status == f"cat.jpg: {boxes} object boxes"
    assert [answer] == expected


def test_the_answer_streams(loaded, tiny_data):
    """The page gets the answer piece by piece while it is generated, then the session's final answer."""
    from types import SimpleNamespace

    from mg_llava.web import WebDemo
    from mg_llava.web.demo import BOX_FILE

    demo = WebDemo(loaded, boxes=tiny_data["boxes"])
    photo = osp.join(tiny_data["image_folder"], f"{MEMORISED[0]}.jpg")
    updates = list(demo.on_ask(None, SimpleNamespace(name=photo, orig_name="chelsea.jpg"), BOX_FILE, None, "",
                               QUESTIONS[0], MAX_NEW_TOKENS, 0.0, 1.0))
    partial = [chat[-1][1] for _, _, chat, status, _ in updates if status == "answering..."]
    assert len(partial) >= 2 and all(b.startswith(a) and b != a for a, b in zip(partial, partial[1:]))
    final = updates[-1][2]
    assert final == [[QUESTIONS[0], MEMORISED[2]]] and partial[-1].strip() == MEMORISED[2]


def test_gradio_requests_validate_on_pydantic_2():
    """The page's requests leave event_id out: under pydantic 2, gradio 3.18's models need the patch to accept them
    (without it every event of the page waits forever)."""
    from gradio.data_classes import Estimation, PredictBody

    from mg_llava.web.gradio_compat import patch_gradio

    patch_gradio()
    body = PredictBody(data=["a question"], fn_index=3, session_hash="tab")
    assert body.event_id is None and body.batched is False
    assert Estimation(queue_size=1, queue_eta=0.5).avg_event_process_time is None
