"""The web demo as a person uses it: tools/web_demo.py's page (gradio 5) serves the trained tiny model on localhost,
behind --auth, and a real headless Chromium (Debian's chromium + chromium-driver, driven by selenium; nothing is
downloaded) logs in, uploads a photo, asks two questions and reads the answers in the page, which must equal
tools/chat.py's for the same input. Two browsers at once (two users, each their own conversation) ask about a photo
of the box file and a photo in no box file (boxes found on the fly); a second upload right after the first is not
lost. Also in the page: bad input and a model that failed to load show a one-line message; clear-history empties
the conversation. A video upload is checked through the page's callbacks.

The screenshot (the image with its boxes and the answers) is saved in the test's tmp dir and copied to
test_artifacts/web_demo.png in the repository root (gitignored).
"""
import base64
import io
import os.path as osp
import shutil
import socket
import time

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
AUTH = ("alice", "s3cret:pw")  # a colon in the password: --auth splits at the first one
# boxes found on the fly: the tiny OWLv2 (random weights: the path is what counts), every candidate kept
BOX_OPTIONS = ["--tagger", "fixed", "--vocabulary", "cat,dog", "--score-threshold", "0.0"]


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
def new_photo(tmp_path_factory):
    """A photo that is in no box file (its name is no entry of the tiny data's)."""
    path = tmp_path_factory.mktemp("uploads") / "holiday_snap.jpg"
    Image.open(ROOT / "mg_llava" / "engine" / "samples" / "chelsea.jpg").convert("RGB").rotate(90, expand=True).save(
        path, quality=92)
    return str(path)


@pytest.fixture(scope="module")
def server(model_paths, trained_checkpoint, tiny_data, tiny_models):
    """tools/web_demo.py's page for the trained tiny model (the tiny box file as its --boxes, the tiny OWLv2 for other
    photos, a password, two answers at once), served on localhost from this process (the model loads in seconds
    here, not in a fresh interpreter)."""
    web_demo = load_tool("web_demo")
    args = web_demo.parse_args(["--checkpoint", trained_checkpoint, *model_paths, "--boxes", tiny_data["boxes"],
                                "--detector", tiny_models["owlv2"], *BOX_OPTIONS, "--max-new-tokens",
                                str(MAX_NEW_TOKENS), "--auth", ":".join(AUTH), "--concurrency", "2"])
    assert args.auth == AUTH
    demo = web_demo.build_demo(args)
    assert demo.load_error is None, demo.load_error
    app, url = serve(demo, args.auth, args.concurrency)
    yield url
    app.close()


def serve(demo, auth=None, concurrency=1):
    app = demo.build(concurrency=concurrency)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, auth=auth, ssr_mode=False,
               quiet=True)
    return app, f"http://127.0.0.1:{port}/"


def start_browser():
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("no headless browser (Debian package): apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1300"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


@pytest.fixture(scope="module")
def browser():
    driver = start_browser()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def second_browser():
    """Another user: a browser of its own (its own cookies and gradio session)."""
    driver = start_browser()
    yield driver
    driver.quit()


class Page:
    """The demo page in the browser, by the elem_ids mg_llava/web/demo.py gives its components; logs in first when
    the server asks for ``auth``."""

    def __init__(self, driver, url, auth=None):
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        driver.delete_all_cookies()
        driver.get(url)
        self.wait = WebDriverWait(driver, WAIT_S)
        if auth is not None:
            login(driver, self.wait, *auth)
        self.wait.until(lambda d: d.find_elements("css selector", "#upload input[type=file]"))

    def upload(self, path):
        self.driver.find_element("css selector", "#upload input[type=file]").send_keys(path)

    def remove_upload(self):
        """The file component's clear button: the upload field comes back."""
        self.wait.until(lambda d: d.find_elements("css selector", "#upload button[aria-label=Clear]"))[0].click()
        self.wait.until(lambda d: d.find_elements("css selector", "#upload input[type=file]"))

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
        return [m.text for m in self.driver.find_elements("css selector", "#chat [data-testid=bot]")]

    def picture(self) -> Image.Image:
        """The shown picture's bytes, fetched by the page itself (with its login cookie)."""
        src = self.driver.find_element("css selector", "#picture img").get_attribute("src")
        data = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(arguments[0]).then(r => r.blob()).then(b => { const f = new FileReader();"
            " f.onload = () => done(f.result); f.readAsDataURL(b); });", src)
        return Image.open(io.BytesIO(base64.b64decode(data.split(",", 1)[1]))).convert("RGB")


def login(driver, wait, user, password):
    """gradio's login form: user name, password, the Login button."""
    wait.until(lambda d: d.find_elements("css selector", "input[type=password]"))
    driver.find_element("css selector", "input[type=text]").send_keys(user)
    driver.find_element("css selector", "input[type=password]").send_keys(password)
    driver.find_element("xpath", "//button[normalize-space()='Login']").click()


def expected_picture(loaded, photo, boxes):
    """The photo with the boxes the model gets (``boxes`` as ChatSession takes them), drawn."""
    from mg_llava.inference import ChatSession
    from mg_llava.inference.preprocess import decode_image
    from mg_llava.web.demo import boxes_picture

    session = ChatSession(loaded, image=photo, boxes=boxes)
    image, _ = decode_image(photo)
    return boxes_picture(image, session.image.boxes, session.image.views.geometry), image


def same_picture(shown, expected) -> bool:
    return shown.size == expected.size and ImageChops.difference(shown, expected).getbbox() is None


def test_answers_in_the_page_equal_chat_py_and_clear_history_works(browser, server, reference_answers, loaded,
                                                                    tiny_data, tmp_path):
    from mg_llava.dataset import load_box_file

    page = Page(browser, server, AUTH)
    photo = osp.join(tiny_data["image_folder"], f"{MEMORISED[0]}.jpg")
    page.upload(photo)
    page.wait_status("chelsea.jpg: 2 object boxes (box file boxes.json, entry 'chelsea')")

    # the picture shown is the photo with the boxes the model gets, drawn
    expected, image = expected_picture(loaded, photo, (load_box_file(tiny_data["boxes"]), MEMORISED[0]))
    shown = page.picture()
    assert same_picture(shown, expected)
    assert not same_picture(shown, image)  # the boxes are drawn on it

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
    # the chat's own bin icon clears the conversation the model sees, not only the messages shown
    browser.find_element("css selector", "#chat button[aria-label=Clear]").click()
    page.wait_status("history cleared")
    page.ask(QUESTIONS[0])
    page.wait_status("1 turn,")
    assert page.bot_messages() == reference_answers[:1]


def test_two_users_at_once_one_with_a_photo_in_no_box_file(browser, second_browser, server, reference_answers,
                                                           loaded, model_paths, trained_checkpoint, tiny_models,
                                                           tiny_data, new_photo):
    """Two browsers ask at the same moment: each gets the answers chat.py gives for its own photo and boxes. The
    second photo is in no box file: its boxes are found on the fly (chat.py's --detector options), not an error."""
    web_demo = load_tool("web_demo")
    generator = web_demo.build_box_generator(web_demo.parse_args(["--detector", tiny_models["owlv2"],
                                                                  *BOX_OPTIONS]), "cpu")
    expected, _ = expected_picture(loaded, new_photo, generator)
    new_answers = load_tool("chat").main(["--checkpoint", trained_checkpoint, *model_paths, "--image", new_photo,
                                          "--detector", tiny_models["owlv2"], *BOX_OPTIONS, "--prompt",
                                          QUESTIONS[0], "--prompt", QUESTIONS[1], "--max-new-tokens",
                                          str(MAX_NEW_TOKENS)])

    first, second = Page(browser, server, AUTH), Page(second_browser, server, AUTH)
    first.upload(osp.join(tiny_data["image_folder"], f"{MEMORISED[0]}.jpg"))
    second.upload(new_photo)
    first.wait_status("chelsea.jpg: 2 object boxes (box file")
    status = second.wait_status("holiday_snap.jpg: ", "(not in box file boxes.json: found on the fly)")
    assert " 0 object boxes" not in status
    assert same_picture(second.picture(), expected)
    for turn in (1, 2):
        first.ask(QUESTIONS[turn - 1])
        second.ask(QUESTIONS[turn - 1])
        first.wait_status(f"{turn} turn")
        second.wait_status(f"{turn} turn")
    assert first.bot_messages() == reference_answers
    assert second.bot_messages() == new_answers


def test_an_upload_right_after_another_is_not_lost(browser, server, loaded, tiny_data, tmp_path):
    """gradio 3's queue dropped an upload made while the previous one was being prepared; the page must end on the
    last upload. The first is a 4-megapixel photo with boxes found on the fly (seconds to prepare and show)."""
    from mg_llava.dataset import load_box_file

    big = tmp_path / "big_photo.jpg"
    Image.open(ROOT / "mg_llava" / "engine" / "samples" / "chelsea.jpg").convert("RGB").resize((2400, 1800)).save(big)
    photo = osp.join(tiny_data["image_folder"], f"{MEMORISED[0]}.jpg")
    page = Page(browser, server, AUTH)
    start = time.monotonic()
    page.upload(str(big))
    page.remove_upload()
    page.upload(photo)
    elapsed = time.monotonic() - start
    assert "big_photo" not in page.status(), "the first upload was ready before the second: nothing was tested"
    page.wait_status("chelsea.jpg: 2 object boxes")
    expected, _ = expected_picture(loaded, photo, (load_box_file(tiny_data["boxes"]), MEMORISED[0]))
    assert same_picture(page.picture(), expected)
    time.sleep(1.0)  # nothing arrives later to replace it
    assert page.status().startswith("chelsea.jpg: 2 object boxes")
    print(f"second upload {elapsed:.2f} s after the first")


def test_a_wrong_password_does_not_open_the_page(browser, server):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.delete_all_cookies()
    browser.get(server)
    wait = WebDriverWait(browser, WAIT_S)
    login(browser, wait, AUTH[0], "wrong")
    wait.until(lambda d: "Incorrect" in d.find_element("tag name", "body").text)
    assert not browser.find_elements("css selector", "#upload")
    # gradio's API behind the page refuses too
    from urllib.error import HTTPError
    from urllib.request import urlopen

    with pytest.raises(HTTPError) as err:
        urlopen(server + "config")
    assert err.value.code == 401


def test_bad_input_shows_a_one_line_message_in_the_page(browser, server, tmp_path):
    page = Page(browser, server, AUTH)
    page.ask("What is in the image?")
    page.wait_status("Error", "no image or video: upload one first")

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a JPEG at all" * 10)
    page.upload(str(broken))
    status = page.wait_status("Error", "broken.jpg")
    assert status.startswith("Error: broken.jpg: cannot identify image") and "\n" not in status
    assert status.count("broken.jpg") == 1 and str(tmp_path) not in status  # named once, not the server's copy
    assert page.bot_messages() == []
    page.ask("What is in the image?")  # the page still answers requests: an error, not a dead server
    page.wait_status("Error", "broken.jpg")


def test_a_model_that_fails_to_load_shows_a_message_in_the_page(browser, model_paths, tmp_path):
    """Also the page without --auth: no login asked."""
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


def test_auth_takes_user_and_password():
    web_demo = load_tool("web_demo")
    assert web_demo.parse_args(["--auth", "bob:a:b"]).auth == ("bob", "a:b")
    assert web_demo.parse_args([]).auth is None
    for bad in ("bob", ":pw", "bob:"):
        with pytest.raises(SystemExit):
            web_demo.parse_args(["--auth", bad])


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
    from mg_llava.testing.videos import write_video
    from mg_llava.web import WebDemo
    from mg_llava.web.demo import NO_BOXES

    photo = Image.open(ROOT / "mg_llava" / "engine" / "samples" / "chelsea.jpg").convert("RGB").resize((96, 64))
    upload = write_video(str(tmp_path / "cat.mp4"), [photo.rotate(15 * k) for k in range(4)])  # gradio's copy
    demo = WebDemo(loaded, max_new_tokens=MAX_NEW_TOKENS)
    session, picture, chat, status = demo.on_upload(upload, NO_BOXES, None, "")
    frames = loaded.preprocessor.num_frames
    assert session.video is not None and len(session.video.frames) == frames
    assert status == f"cat.mp4: frames {session.video.indices}, 0 object boxes (no boxes)" and chat == []
    assert picture.size == (256 * min(frames, 4), (256 + 20) * -(-frames // 4))  # make_grid's tiles

    updates = list(demo.on_ask(session, upload, NO_BOXES, None, "", QUESTIONS[0], MAX_NEW_TOKENS, 0.0, 1.0))
    answer = updates[-1][2][-1]["content"]
    expected = load_tool("chat").main(["--checkpoint", trained_checkpoint, *model_paths, "--video", upload,
                                       "--no-boxes", "--prompt", QUESTIONS[0], "--max-new-tokens",
                                       str(MAX_NEW_TOKENS)])
    assert [answer] == expected
    assert updates[-1][3] == "1 turn, 0 object boxes"


def test_boxes_found_on_the_fly_are_chat_py_s(loaded, model_paths, trained_checkpoint, tiny_models, tiny_data,
                                              tmp_path, capsys):
    """--detector/--tagger as in chat.py: the upload gets the boxes chat.py finds for the same image, and the same
    answer; in the default mode, for a photo the box file has no entry for (a photo it has gets its entry)."""
    from mg_llava.web import WebDemo
    from mg_llava.web.demo import AUTO, ON_THE_FLY

    web_demo = load_tool("web_demo")
    generator = web_demo.build_box_generator(web_demo.parse_args(["--detector", tiny_models["owlv2"],
                                                                  *BOX_OPTIONS]), "cpu")
    demo = WebDemo(loaded, box_generator=generator, boxes=tiny_data["boxes"], max_new_tokens=4)
    photo = osp.join(tiny_data["image_folder"], f"{MEMORISED[0]}.jpg")
    upload = str(tmp_path / "cat.jpg")  # gradio's copy keeps the upload's name: not an entry of the box file
    shutil.copy(photo, upload)
    session, _, _, status = demo.on_upload(upload, ON_THE_FLY, None, "")
    answer = list(demo.on_ask(session, upload, ON_THE_FLY, None, "", QUESTIONS[0], 4, 0.0, 1.0))[-1][2][-1]["content"]

    capsys.readouterr()
    expected = load_tool("chat").main(["--checkpoint", trained_checkpoint, *model_paths, "--image", photo,
                                       "--detector", tiny_models["owlv2"], *BOX_OPTIONS, "--prompt", QUESTIONS[0],
                                       "--max-new-tokens", "4"])
    boxes = int(capsys.readouterr().out.split(": ")[1].split(" object")[0])
    assert boxes > 0 and status == f"cat.jpg: {boxes} object boxes (found on the fly)"
    assert [answer] == expected

    auto = demo.on_upload(upload, AUTO, None, "")
    assert auto[3] == f"cat.jpg: {boxes} object boxes (not in box file boxes.json: found on the fly)"
    assert torch_equal(auto[0].image.boxes, session.image.boxes)
    in_file = demo.on_upload(photo, AUTO, None, "")[3]
    assert in_file == "chelsea.jpg: 2 object boxes (box file boxes.json, entry 'chelsea')"
    # without a detector the photo gets no boxes, and the status says why
    plain = WebDemo(loaded, boxes=tiny_data["boxes"])
    assert plain.on_upload(upload, AUTO, None, "")[3] == ("cat.jpg: 0 object boxes (not in box file boxes.json "
                                                          "and no --detector: no boxes)")
    # the box-file mode stays: an upload without an entry is an error there
    assert plain.on_upload(upload, "box file", None, "")[3] == ("**Error:** box file boxes.json has no entry 'cat' "
                                                                "for cat.jpg; give its id")


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(torch.as_tensor(a), torch.as_tensor(b))


def test_the_answer_streams(loaded, tiny_data):
    """The page gets the answer piece by piece while it is generated, then the session's final answer."""
    from mg_llava.web import WebDemo
    from mg_llava.web.demo import BOX_FILE

    demo = WebDemo(loaded, boxes=tiny_data["boxes"])
    photo = osp.join(tiny_data["image_folder"], f"{MEMORISED[0]}.jpg")
    updates = list(demo.on_ask(None, photo, BOX_FILE, None, "", QUESTIONS[0], MAX_NEW_TOKENS, 0.0, 1.0))
    partial = [chat[-1]["content"] for _, _, chat, status, _ in updates if status == "answering..."]
    assert len(partial) >= 2 and all(b.startswith(a) and b != a for a, b in zip(partial, partial[1:]))
    final = updates[-1][2]
    assert final == [dict(role="user", content=QUESTIONS[0]), dict(role="assistant", content=MEMORISED[2])]
    assert partial[-1].strip() == MEMORISED[2]
