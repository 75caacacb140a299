"""tools/serve.py's OpenAI-compatible API, called with the official `openai` client on localhost, serving the trained
tiny model (the server runs in this process: the model loads in seconds here): answers equal tools/chat.py's for the
same image, boxes (from the box file, found on the fly, none) and question; streamed pieces add up to the answer; a
bounded load test (LOAD_REQUESTS requests from LOAD_CLIENTS concurrent clients, every photo of the tiny data) gets
each request answered with its own photo's answer, or, with fewer places than clients, refused with 429, none lost;
bad requests get clear 4xx errors and the server keeps serving.
"""
import base64
import io
import json
import os
import os.path as osp
import time
from concurrent.futures import ThreadPoolExecutor

import openai  # the dev extra installs it: a missing client is an error, not a skip
import pytest
from PIL import Image

from inference_helpers import MEMORISED, MEMORISED_TEXT
from tool_helpers import load_tool

KEY = "test-key"
QUESTION = MEMORISED[1]
# the tiny model answers QUESTION "a cat" for every photo; its 8-token descriptions differ with the photo (6 different
# texts for the 8 photos), which is what shows a request answered about another request's image
DESCRIBE = "Describe the picture in detail."
MAX_TOKENS = 8
LOAD_REQUESTS = 32  # per server (batch sizes 1 and 4); README's figures: 200 requests (tools/bench_serve.py)
LOAD_CLIENTS = 16
DETECTOR_OPTIONS = ["--tagger", "fixed", "--vocabulary", "cat,dog", "--score-threshold", "0.0"]


def data_url(path: str) -> str:
    with open(path, "rb") as f:
        return "data:image/jpeg;base64," + base64.b64encode(f.read()).decode()


def image_message(url: str, question: str = QUESTION) -> list:
    return [{"role": "user", "content": [{"type": "text", "text": question},
                                         {"type": "image_url", "image_url": {"url": url}}]}]


@pytest.fixture(scope="module")
def serve_tool():
    return load_tool("serve")


@pytest.fixture(scope="module")
def server_options(model_paths, trained_checkpoint, tiny_data, tiny_models):
    return ["--checkpoint", trained_checkpoint, *model_paths, "--boxes", tiny_data["boxes"], "--detector",
            tiny_models["owlv2"], *DETECTOR_OPTIONS, "--api-key", KEY, "--max-batch-size", "4",
            "--max-pending", "32", "--batch-wait-ms", "50", "--max-body-mb", "1", "--allow-local-images",
            tiny_data["image_folder"], "--max-new-tokens", str(MAX_TOKENS)]


@pytest.fixture(scope="module")
def model_server(serve_tool, server_options):
    return serve_tool.build_server(serve_tool.parse_args(server_options))


@pytest.fixture(scope="module")
def server(model_server):
    from mg_llava.serving import ServerThread

    with ServerThread(model_server.app()) as thread:
        yield thread


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def model_name(client):
    return client.models.list().data[0].id


@pytest.fixture(scope="module")
def photos(tiny_data):
    return {osp.splitext(name)[0]: osp.join(tiny_data["image_folder"], name)
            for name in sorted(os.listdir(tiny_data["image_folder"]))}


def ask(client, model_name, messages, **kwargs):
    response = client.chat.completions.create(model=model_name, messages=messages, max_tokens=MAX_TOKENS,
                                              temperature=0, **kwargs)
    return response.choices[0].message.content


def chat_py(model_paths, trained_checkpoint, options, prompts):
    args = ["--checkpoint", trained_checkpoint, *model_paths, *options, "--max-new-tokens", str(MAX_TOKENS)]
    for prompt in prompts:
        args += ["--prompt", prompt]
    return load_tool("chat").main(args)


def test_answers_equal_chat_py_for_each_box_mode_and_text_only(client, model_name, model_paths, trained_checkpoint,
                                                               tiny_data, tiny_models, photos):
    name = MEMORISED[0]
    url = data_url(photos[name])
    follow_up = "Is there a cat in the image? Please answer the question with yes or no."
    modes = {"file": (["--boxes", tiny_data["boxes"], "--box-id", name], dict(boxes="file", box_id=name)),
             "auto": (["--detector", tiny_models["owlv2"], *DETECTOR_OPTIONS], dict(boxes="auto")),
             "none": (["--no-boxes"], dict(boxes="none"))}
    for mode, (options, extra) in modes.items():
        expected = chat_py(model_paths, trained_checkpoint, ["--image", photos[name], *options], [QUESTION, follow_up])
        first = ask(client, model_name, image_message(url), extra_body=extra)
        second = ask(client, model_name, image_message(url) + [{"role": "assistant", "content": first},
                                                               {"role": "user", "content": follow_up}],
                     extra_body=extra)
        assert [first, second] == expected, mode
    assert first == MEMORISED[2]  # the trained answer, not an empty or an error text
    # on a question whose answer depends on the photo
    described = {}
    for photo in ("chelsea", "coins"):
        described[photo] = ask(client, model_name, image_message(data_url(photos[photo]), DESCRIBE),
                               extra_body=dict(boxes="none"))
        assert [described[photo]] == chat_py(model_paths, trained_checkpoint, ["--image", photos[photo], "--no-boxes"],
                                             [DESCRIBE])
    assert described["chelsea"] != described["coins"], described
    # the server's default box mode is the detector's (it was started with --detector and --boxes)
    assert ask(client, model_name, image_message(url)) == ask(client, model_name, image_message(url),
                                                              extra_body=dict(boxes="auto"))
    # text only: a text conversation, as chat.py without --image
    question, answer = MEMORISED_TEXT
    assert ask(client, model_name, [{"role": "user", "content": question}]) == answer
    assert chat_py(model_paths, trained_checkpoint, [], [question]) == [answer]
    # a local path, where the server allows its folder, reads the same file
    assert ask(client, model_name, image_message("file://" + photos[name]), extra_body=dict(boxes="none")) == \
        ask(client, model_name, image_message(url), extra_body=dict(boxes="none"))


def test_streaming_adds_up_to_the_answer_and_stop_and_max_tokens(client, model_name, photos, model_server):
    for name in ("chelsea", "coffee", "rocket"):
        messages = image_message(data_url(photos[name]), DESCRIBE)
        for extra in (dict(), dict(stop=[" orange", "ph"]), dict(max_tokens=2)):
            settings = dict(max_tokens=MAX_TOKENS, temperature=0, extra_body=dict(boxes="none"))
            settings.update(extra)
            whole = client.chat.completions.create(model=model_name, messages=messages, **settings)
            chunks = list(client.chat.completions.create(model=model_name, messages=messages, stream=True,
                                                         stream_options={"include_usage": True}, **settings))
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text == whole.choices[0].message.content, (name, extra)
            finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
            assert finish == [whole.choices[0].finish_reason], (name, extra)
            assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
            assert whole.usage.prompt_tokens > 16  # text and visual tokens
            if "max_tokens" in extra:
                assert whole.choices[0].finish_reason == "length" and whole.usage.completion_tokens == 2
    # streamed together: rows of one batch, each streaming its own answer
    def streamed(name):
        stream = client.chat.completions.create(model=model_name, messages=image_message(data_url(photos[name]),
                                                                                         DESCRIBE),
                                                max_tokens=MAX_TOKENS, temperature=0, stream=True,
                                                extra_body=dict(boxes="none"))
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    names = ["chelsea", "coins", "moon", "rocket"]
    sizes = dict(model_server.batcher.batch_sizes)
    with ThreadPoolExecutor(len(names)) as pool:
        together = list(pool.map(streamed, names))
    assert together == [ask(client, model_name, image_message(data_url(photos[name]), DESCRIBE),
                            extra_body=dict(boxes="none")) for name in names]
    assert any(size > 1 and count > sizes.get(size, 0) for size, count in model_server.batcher.batch_sizes.items())
    coffee = image_message(data_url(photos["coffee"]), DESCRIBE)
    full = ask(client, model_name, coffee, extra_body=dict(boxes="none"))
    stop = " " + full.split()[1]  # a word in the middle of the answer ends it there
    assert ask(client, model_name, coffee, stop=stop, extra_body=dict(boxes="none")) == full[:full.index(stop)]


def test_load_every_request_answered_with_its_own_photos_answer_or_refused(model_paths, trained_checkpoint,
                                                                           tiny_data, tmp_path, model_server):
    """tools/bench_serve.py's load test, without batching and with it: its own checks (nothing lost or mixed up)
    pass, and here also: every request answered (as many places as clients), the photos' answers differ (a mix-up
    would show), and batches of more than one request ran. Then overloaded (fewer places than clients): every
    request answered with its own photo's answer or refused with 429, none lost."""
    result = load_tool("bench_serve").main(
        ["--checkpoint", trained_checkpoint, *model_paths, "--images", tiny_data["image_folder"], "--question",
         DESCRIBE, "--requests", str(LOAD_REQUESTS), "--concurrency", str(LOAD_CLIENTS), "--batch-sizes", "1", "4",
         "--max-tokens", str(MAX_TOKENS), "--json", str(tmp_path / "bench_serve.json")])
    assert json.loads((tmp_path / "bench_serve.json").read_text()) == result
    assert len(set(result["references"].values())) >= 4, result["references"]
    for run in result["runs"]:
        assert run["requests"] == LOAD_REQUESTS and run["lost"] == 0 and run["mixed_up"] == 0, run
        assert run["statuses"] == {"200": LOAD_REQUESTS}, run  # as many places as clients: none refused
    unbatched, batched = result["runs"]
    assert set(unbatched["batch_sizes"]) == {"1"}, unbatched
    assert max(int(size) for size in batched["batch_sizes"]) > 1, batched  # requests were batched

    from mg_llava.serving import ModelServer, ServerThread
    from mg_llava.serving.loadtest import check_answers, run_load, summarize

    items = load_tool("bench_serve").image_items(tiny_data["image_folder"], DESCRIBE)
    settings = model_server.settings
    busy = ModelServer(model_server.loaded, type(settings)(**{**settings.__dict__, "max_pending": 6}))
    with ServerThread(busy.app()) as thread:
        client = openai.OpenAI(base_url=thread.url + "/v1", api_key=KEY, max_retries=0, timeout=120)
        records, wall_s = run_load(client, settings.model_name, items, LOAD_REQUESTS, LOAD_CLIENTS, MAX_TOKENS)
    summary = summarize(records, wall_s)
    assert summary["lost"] == 0 and set(summary["statuses"]) == {"200", "429"}, summary
    assert check_answers(records, result["references"]) == []


def test_bad_requests_get_clear_4xx_and_the_server_keeps_serving(server, client, model_name, photos, tmp_path):
    import httpx

    good = image_message(data_url(photos["chelsea"]))
    expected = ask(client, model_name, good, extra_body=dict(boxes="none"))
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, "PNG")  # 400 M pixels in a few KB
    not_image = "data:image/png;base64," + base64.b64encode(b"not an image at all").decode()
    cases = [
        (openai.BadRequestError, "not valid base64", image_message("data:image/png;base64,@@@")),
        (openai.BadRequestError, "data URL must look like", image_message("data:image/png,abc")),
        (openai.BadRequestError, "cannot identify image", image_message(not_image)),
        (openai.BadRequestError, "decompression bomb",
         image_message("data:image/png;base64," + base64.b64encode(bomb.getvalue()).decode())),
        (openai.BadRequestError, "remote URLs are not fetched", image_message("https://example.com/a.jpg")),
        (openai.PermissionDeniedError, "outside the folders", image_message(str(tmp_path / "a.jpg"))),
        (openai.BadRequestError, "one image per conversation",
         [{"role": "user", "content": good[0]["content"] * 2}]),
        (openai.BadRequestError, "has no entry", good),  # boxes 'file' for a data URL without box_id
        (openai.BadRequestError, "must alternate", [{"role": "assistant", "content": "hi"}]),
    ]
    for error, words, messages in cases:
        extra = dict(boxes="file") if words == "has no entry" else dict(boxes="none")
        with pytest.raises(error, match=words):
            ask(client, model_name, messages, extra_body=extra)
    with pytest.raises(openai.BadRequestError, match="temperature must be in"):
        ask(client, model_name, good, extra_body=dict(temperature=5))
    with pytest.raises(openai.NotFoundError, match="is not served here"):
        ask(client, "another-model", good)
    huge = image_message("data:image/jpeg;base64," + "A" * (2 << 20))
    with pytest.raises(openai.APIStatusError, match="exceeds the limit") as err:
        ask(client, model_name, huge)
    assert err.value.status_code == 413
    wrong = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="wrong or missing API key"):
        ask(wrong, model_name, good)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    body = dict(model=model_name, messages=good, max_tokens=MAX_TOKENS)
    missing = httpx.post(server.url + "/v1/chat/completions", json=body)  # no key at all (the client needs one)
    assert missing.status_code == 401 and "API key" in missing.json()["error"]["message"]
    assert httpx.get(server.url + "/health").json()["status"] == "ok"  # health needs no key
    assert ask(client, model_name, good, extra_body=dict(boxes="none")) == expected  # still serving


def test_queue_full_gets_429_and_timeout_gets_504(model_server, photos):
    import threading

    from mg_llava.serving import ModelServer, ServerThread

    settings = model_server.settings
    small = ModelServer(model_server.loaded, type(settings)(**{**settings.__dict__, "max_pending": 1,
                                                               "request_timeout_s": 1.0}))
    good = image_message(data_url(photos["chelsea"]))
    with ServerThread(small.app()) as thread:
        client = openai.OpenAI(base_url=thread.url + "/v1", api_key=KEY, max_retries=0, timeout=60)
        expected = ask(client, settings.model_name, good, extra_body=dict(boxes="none"))
        small.batcher.reserve()  # the one place taken
        with pytest.raises(openai.RateLimitError, match="server is busy"):
            ask(client, settings.model_name, good, extra_body=dict(boxes="none"))
        small.batcher.release()
        gate, run = threading.Event(), small.batcher.run
        small.batcher.run = lambda jobs: (gate.wait(), run(jobs))  # the model is busy for longer than the timeout
        with pytest.raises(openai.APIStatusError, match="no answer within") as err:
            ask(client, settings.model_name, good, extra_body=dict(boxes="none"))
        assert err.value.status_code == 504
        gate.set()  # the timed-out request's generation stops at its first step and frees its place
        deadline = time.monotonic() + 30
        while small.batcher.pending and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ask(client, settings.model_name, good, extra_body=dict(boxes="none")) == expected
        assert small.batcher.pending == 0


def test_visible_text_is_always_a_start_of_the_final_answer():
    """Each prefix of a generated text shows only what the final answer (clean_answer) starts with."""
    from mg_llava.inference.generation import clean_answer
    from mg_llava.serving.batcher import completion_length
    from mg_llava.serving.streaming import visible_text

    stop, special = ["###", "</s>"], ["</s>", "<unk>"]
    for text in (" a cup# of\ufffd coffee##x###tail", "a cat</s></s>", "  two <unk>words ##", "no stop at all \ufffd"):
        final = clean_answer(text, stop, special)
        shown = [visible_text(text[:k], stop, special) for k in range(len(text) + 1)]
        assert all(final.startswith(s) for s in shown), (text, shown, final)
        assert all(b.startswith(a) for a, b in zip(shown, shown[1:])), shown  # it only grows: nothing to take back
    assert visible_text("a cat</s></s>", stop, special) == "a cat"
    assert visible_text("a cup#", stop, special) == "a cup"  # '#' may begin '###': held back
    assert visible_text("a cup# of", stop, special) == "a cup# of"
    assert completion_length([5, 6, 2, 2], eos_id=2, pad_id=2) == (3, True)
    assert completion_length([5, 6, 0, 0], eos_id=2, pad_id=0) == (2, False)  # stopped by a stop word, then padded
    assert completion_length([5, 6, 7], eos_id=2, pad_id=0) == (3, False)
