"""Table-driven fuzzing of every file we read: bit flips, truncation at many offsets, wrong headers, wrong modes.

Each mutated file goes through the user's reader. The only allowed outcomes are a result, one of our named errors
(which name the file), or a counted skip; any other exception type fails the test. Where the format carries
checksums (PNG chunks, zlib streams), a decoded result must be the original picture. A checkpoint or export that
still loads must hold the original values, or, where a flip hit a tensor's stored bytes in a format without a
checksum on them, exactly that bit flipped. A video (one test case per mutation, each under a timeout: a hang fails)
gives the frames it claims or a named error.
"""
import io
import itertools
import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from mg_llava.data_files import CorruptCheckpointError, DataFileError
from mg_llava.dataset import BadSampleError, VideoReadError, load_box_file, read_video, sample_frame_indices
from mg_llava.dataset.conversations import read_llava_file
from mg_llava.image_io import ImageDecodeError, open_image
from mg_llava.inference.benchmarks import read_benchmark
from mg_llava.inference.weights import UnsafeCheckpointError, read_checkpoint, read_export
from mg_llava.testing.images import load_skimage
from mg_llava.testing.videos import write_video

OUR_ERRORS = (ImageDecodeError, DataFileError, BadSampleError, UnsafeCheckpointError)
RNG_SEED = 12


def mutations(data: bytes, flips: int = 24, cuts: int = 16):
    """(name, bytes): truncations at evenly spread offsets, single-bit flips at seeded positions, wrong headers."""
    rng = random.Random(RNG_SEED)
    for cut in sorted({int(len(data) * i / cuts) for i in range(cuts)}):
        yield f"cut@{cut}", data[:cut]
    for _ in range(flips):
        pos, bit = rng.randrange(len(data)), rng.randrange(8)
        yield f"flip@{pos}.{bit}", data[:pos] + bytes([data[pos] ^ (1 << bit)]) + data[pos + 1:]
    for magic in (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"PK\x03\x04", b"{\"a\": ", b"\x80\x02"):
        yield f"header {magic[:4]!r}", magic + data[len(magic):]


def outcome(read, path, data):
    """Write ``data`` to ``path`` and read it; returns ('ok', result) or ('error', our error)."""
    path.write_bytes(data)
    try:
        return "ok", read(str(path))
    except OUR_ERRORS as err:
        assert str(path) in str(err) or path.name in str(err), f"error does not name the file: {err}"
        return "error", err
    except FileNotFoundError as err:
        raise AssertionError(f"mutated file reported missing: {err}") from err


def _encode(image, fmt, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def small_images():
    picture = load_skimage("astronaut").resize((24, 16))
    grey16 = Image.fromarray((np.arange(24 * 16, dtype=np.uint16).reshape(16, 24) * 170))
    return {
        "png": _encode(picture, "PNG"),
        "jpeg": _encode(picture, "JPEG", quality=90),
        "png16": _encode(grey16, "PNG"),
        "tiff-cmyk": _encode(picture.convert("CMYK"), "TIFF"),
        "gif-palette": _encode(picture.convert("P"), "GIF", transparency=0),
    }


@pytest.mark.parametrize("kind", ["png", "jpeg", "png16", "tiff-cmyk", "gif-palette"])
def test_images(kind, small_images, tmp_path):
    data = small_images[kind]
    original = np.asarray(open_image(data).image)
    counts = {"ok": 0, "error": 0}
    for name, mutated in mutations(data):
        result, value = outcome(lambda p: open_image(p, where=f"sample {name!r}"), tmp_path / f"x.{kind}", mutated)
        counts[result] += 1
        if result == "ok":
            assert value.image.mode == "RGB"
            if kind in ("png", "png16") and name.startswith("flip") and value.size == original.shape[1::-1]:
                # CRC-protected chunks and an Adler-checked zlib stream: a decoded flip is the same picture
                assert np.array_equal(np.asarray(value.image), original), f"{kind} {name}: silently different"
        else:
            assert value.reason in ("unreadable", "too_large") and f"sample {name!r}" in str(value)
    assert counts["error"] >= 16, counts  # every truncation before the pixel data, at least


def _llava_records():
    turns = [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A cat."}]
    return [{"id": str(i), "image": f"{i}.jpg", "conversations": turns} for i in range(6)]


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_annotation_files(suffix, tmp_path):
    records = _llava_records()
    text = json.dumps(records) if suffix == ".json" else "".join(json.dumps(r) + "\n" for r in records)
    for name, mutated in mutations(text.encode()):
        result, value = outcome(read_llava_file, tmp_path / f"data{suffix}", mutated)
        if result == "ok":  # parsed: every sample is either good or a counted bad sample
            good, bad = value
            if suffix == ".jsonl" and mutated.strip():
                assert len(good) + len(bad) >= 1
            assert all(b.file.endswith(suffix) for b in bad)


def test_box_files(tmp_path):
    entries = [{"id": str(i), "boxes": [[1.0, 2.0, 30.0, 40.0]] * 2, "scores": [0.9, 0.5], "labels": ["cat", "dog"]}
               for i in range(5)]
    data = json.dumps(entries).encode()
    for strict in (True, False):
        for name, mutated in mutations(data):
            result, value = outcome(lambda p: load_box_file(p, strict=strict), tmp_path / "boxes.json", mutated)
            if result == "ok":
                assert len(value) + len(value.bad) >= 1


def test_mmbench_tsv(tmp_path):
    rows = ["index\tquestion\tA\tB\tanswer\timage"]
    rows += [f"{i}\tWhich?\tcat\tdog\tA\t{i}.jpg" for i in range(5)]
    data = ("\n".join(rows) + "\n").encode()
    for policy in ("raise", "skip"):
        for name, mutated in mutations(data):
            result, value = outcome(lambda p: read_benchmark(p, "mmbench", image_folder=str(tmp_path),
                                                             on_bad_sample=policy), tmp_path / "mmb.tsv", mutated)
            if result == "ok":
                assert len(value.items) + len(value.bad) >= 1 and value.total_rows >= len(value.bad)


def expected_after(name, original, data):
    """The bytes of ``original`` a loader may return from ``data`` (the file it was stored in) mutated by ``name``:
    its own bytes, or, for a flip inside its stored bytes, those bytes with that bit flipped (neither torch's zip
    reader nor safetensors checks the tensor data; a flip anywhere else must not change a value that loads)."""
    raw = original.contiguous().numpy().tobytes()
    start = data.find(raw)
    assert start >= 0 and data.find(raw, start + 1) < 0, "the tensor's bytes must appear once in the file"
    if name.startswith("flip@"):
        pos, bit = (int(v) for v in name[len("flip@"):].split("."))
        if start <= pos < start + len(raw):
            flipped = bytearray(raw)
            flipped[pos - start] ^= 1 << bit
            return bytes(flipped)
    return raw


def data_flips(data, tensor, count=6):
    """(name, bytes): single-bit flips inside ``tensor``'s stored bytes in ``data`` (the seeded flips rarely land
    in a 48-byte tensor), named as :func:`mutations` names its flips."""
    start = data.find(tensor.contiguous().numpy().tobytes())
    for i in range(count):
        pos, bit = start + (i * 7919) % (tensor.numel() * tensor.element_size()), (3 * i + 1) % 8
        yield f"flip@{pos}.{bit}", data[:pos] + bytes([data[pos] ^ (1 << bit)]) + data[pos + 1:]


def same_bytes(loaded, expected):
    # bytes, not values: a flipped exponent bit may make a NaN, which equals nothing
    return loaded.dtype == torch.float32 and loaded.contiguous().numpy().tobytes() == expected


CHECKPOINT_TENSOR = torch.arange(12.0).view(3, 4)


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "c.pth"
    torch.save({"state_dict": {"projector.model.0.weight": CHECKPOINT_TENSOR}}, path)
    return path.read_bytes()


@pytest.mark.parametrize("allow_unsafe_pickle", [False, True])
def test_checkpoints(allow_unsafe_pickle, checkpoint_bytes, tmp_path):
    corrupt = loaded_changed = 0
    cases = itertools.chain(mutations(checkpoint_bytes, flips=32), data_flips(checkpoint_bytes, CHECKPOINT_TENSOR))
    for name, mutated in cases:
        result, value = outcome(lambda p: read_checkpoint(p, allow_unsafe_pickle), tmp_path / "c.pth", mutated)
        if result == "error":
            corrupt += isinstance(value, CorruptCheckpointError)
            if name.startswith("cut"):  # truncated: reported as corrupt, never as 'holds Python objects'
                assert isinstance(value, CorruptCheckpointError), f"{name}: {value}"
        else:
            assert set(value) == {"projector.model.0.weight"}
            expected = expected_after(name, CHECKPOINT_TENSOR, checkpoint_bytes)
            assert same_bytes(value["projector.model.0.weight"], expected), (
                f"{name}: loaded {value['projector.model.0.weight']}, expected {expected}")
            loaded_changed += expected != CHECKPOINT_TENSOR.numpy().tobytes()
    assert corrupt >= 16
    # torch's zip reader does not check the CRC-32 it writes: a flipped data bit loads as that one changed value
    assert loaded_changed >= 1, "no loadable flip in the tensor data: the value check was not exercised"


def test_refused_global_is_named(tmp_path):
    import os

    class Evil:
        def __reduce__(self):
            return os.system, ("true",)

    torch.save({"state_dict": {}, "meta": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(UnsafeCheckpointError, match=r"evil.pth.*names .*(os|posix)\.system"):
        read_checkpoint(str(tmp_path / "evil.pth"))


def test_export_folders(tmp_path):
    from safetensors.torch import save_file

    folder = tmp_path / "export"
    (folder / "llm").mkdir(parents=True)
    modules = {"projector.model.0.weight": CHECKPOINT_TENSOR}
    save_file(modules, folder / "mg_llava_modules.safetensors")
    save_file({"model.embed.weight": torch.ones(5, 2)}, folder / "llm" / "model.safetensors")
    (folder / "mg_llava.json").write_text(json.dumps({"format_version": 1, "llm": "llm"}))
    originals = {name: (folder / name).read_bytes()
                 for name in ("mg_llava.json", "mg_llava_modules.safetensors", "llm/model.safetensors")}
    assert read_export(str(folder))[1].keys() == {"projector.model.0.weight"}
    changed = 0
    for name, data in originals.items():
        cases = mutations(data, flips=12, cuts=10)
        if name == "mg_llava_modules.safetensors":  # safetensors has no checksum: flips in the data load
            cases = itertools.chain(cases, data_flips(data, CHECKPOINT_TENSOR))
        for mutation, mutated in cases:
            result, value = outcome(lambda p: read_export(str(folder)), folder / name, mutated)
            if result == "error":
                assert name in str(value), f"{name} {mutation}: {value}"
            else:  # what loads holds the stored values (only the vision modules' own flips may change one)
                expected = (expected_after(mutation, CHECKPOINT_TENSOR, data)
                            if name == "mg_llava_modules.safetensors" else CHECKPOINT_TENSOR.numpy().tobytes())
                loaded = value[1]
                assert set(loaded) == set(modules), f"{name} {mutation}: {sorted(loaded)}"
                assert same_bytes(loaded["projector.model.0.weight"], expected), f"{name} {mutation}: {loaded}"
                changed += expected != CHECKPOINT_TENSOR.numpy().tobytes()
        (folder / name).write_bytes(data)
    assert changed >= 1, "no loadable flip in the modules' data: the value check was not exercised"


@pytest.mark.parametrize("damage", ["missing", "truncated", "refused"])
def test_checkpoint_problems_come_before_any_model_is_built(damage, checkpoint_bytes, tmp_path, monkeypatch):
    import os

    from mg_llava.inference import loading

    def never(*args, **kwargs):
        raise AssertionError("a model was built before the checkpoint was read")

    monkeypatch.setattr(loading, "build_from_spec", never)
    path = tmp_path / "c.pth"
    if damage == "truncated":
        path.write_bytes(checkpoint_bytes[: len(checkpoint_bytes) // 2])
    elif damage == "refused":
        class Evil:
            def __reduce__(self):
                return os.system, ("true",)

        torch.save({"state_dict": {}, "meta": Evil()}, path)
    expected = {"missing": FileNotFoundError, "truncated": CorruptCheckpointError, "refused": UnsafeCheckpointError}
    with pytest.raises(expected[damage], match="c.pth"):
        loading.load_from_spec({"llm": str(tmp_path / "no-llm")}, str(path))
    if damage == "truncated":  # the opt-in to full unpickling does not turn damage into 'holds Python objects'
        with pytest.raises(CorruptCheckpointError, match="c.pth"):
            loading.load_from_spec({"llm": str(tmp_path / "no-llm")}, str(path), allow_unsafe_pickle=True)
    with pytest.raises(FileNotFoundError, match="LLM path .*no-llm does not exist"):  # then the model paths
        loading.check_model_paths({"llm": str(tmp_path / "no-llm")})


# ---------------------------------------------------------------------------------------------------------------
# Videos: flipped bits, cut streams and wrong headers in three containers. One test case per mutation, each under a
# timeout (the thread method also ends a hang inside FFmpeg's C code): a hang fails its case.

VIDEO_FRAMES, VIDEO_T = 11, 4
VIDEO_KINDS = {"mp4": "mpeg4", "mkv": "mpeg4", "avi": "mpeg4"}  # suffix: codec (mp4's index sits at the end)
NUM_MUTATIONS = sum(1 for _ in mutations(bytes(4096)))  # the same for every file of over 16 bytes


def grey_level(frame):
    """Frame k of the fuzzed videos is a flat grey of level 20 k: a decoded frame tells its own index."""
    return int(round(np.asarray(frame, dtype=np.float64).mean() / 20))


@pytest.fixture(scope="module")
def video_mutations(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz_videos")
    frames = [Image.new("RGB", (96, 64), (20 * k,) * 3) for k in range(VIDEO_FRAMES)]
    out = {}
    for suffix, codec in VIDEO_KINDS.items():
        path = write_video(str(root / f"v.{suffix}"), frames, codec=codec)
        assert [grey_level(f) for f in read_video(path, VIDEO_FRAMES).frames] == list(range(VIDEO_FRAMES))
        with open(path, "rb") as f:
            out[suffix] = list(mutations(f.read()))
        assert len(out[suffix]) == NUM_MUTATIONS
    return out


@pytest.mark.timeout(60, method="thread")
@pytest.mark.parametrize("case", range(NUM_MUTATIONS))
@pytest.mark.parametrize("suffix", list(VIDEO_KINDS))
def test_videos(suffix, case, video_mutations, tmp_path):
    name, data = video_mutations[suffix][case]
    path = tmp_path / f"clip.{suffix}"
    path.write_bytes(data)
    try:
        video = read_video(str(path), VIDEO_T)
    except VideoReadError as err:
        assert str(path) in str(err), f"{name}: the error does not name the file: {err}"
        return
    # a result: T frames chosen among no more frames than were written, as the frame rule says
    assert 1 <= video.num_video_frames <= VIDEO_FRAMES, f"{name}: {video.num_video_frames} frames"
    assert video.indices == sample_frame_indices(video.num_video_frames, VIDEO_T), name
    assert len(video.frames) == VIDEO_T and all(f.mode == "RGB" for f in video.frames), name
    assert len({f.size for f in video.frames}) == 1, name
    if name.startswith("cut"):  # the bytes before a cut are intact: every frame is the one it claims to be
        assert [grey_level(f) for f in video.frames] == video.indices, f"{name}: wrong frames"
