"""Video decoding: the frame choice, short videos, frames folders, and every kind of bad video input."""
import numpy as np
import pytest
from PIL import Image

from mg_llava.dataset import VideoReadError, read_video, sample_frame_indices
from mg_llava.testing.videos import write_frames_folder, write_video

# Frame k is a flat grey of level 20 k: a decoded frame tells its own index (mpeg4 keeps flat areas within ~2 levels).
LEVELS = 11


def grey_frames(count, size=(96, 64)):
    return [Image.new("RGB", size, (20 * k,) * 3) for k in range(count)]


def frame_numbers(video):
    return [int(round(np.asarray(f, dtype=np.float64).mean() / 20)) for f in video.frames]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    data = {
        "long": write_video(str(root / "long.mp4"), grey_frames(LEVELS)),
        "short": write_video(str(root / "short.mp4"), grey_frames(3)),
        "one": write_video(str(root / "one.mp4"), grey_frames(1)),
        "frames": write_frames_folder(str(root / "frames"), grey_frames(LEVELS), ext="png"),
    }
    return root, data


@pytest.mark.parametrize("n, t, expected", [
    (11, 8, [0, 1, 2, 4, 5, 7, 8, 10]),
    (8, 8, list(range(8))),
    (100, 4, [0, 33, 66, 99]),
    (3, 8, [0, 0, 0, 0, 1, 1, 1, 2]),  # short video: repeated frames
    (1, 8, [0] * 8),
    (5, 1, [0]),
])
def test_frame_indices_are_linspace_truncated(n, t, expected):
    assert sample_frame_indices(n, t) == expected
    assert sample_frame_indices(n, t) == np.linspace(0, n - 1, t).astype(int).tolist()


def test_frame_indices_reject_empty_videos_and_zero_frames():
    with pytest.raises(ValueError, match="at least one frame"):
        sample_frame_indices(0, 8)
    with pytest.raises(ValueError, match="num_frames"):
        sample_frame_indices(5, 0)


def test_video_file_gives_the_chosen_frames_in_order(videos):
    _, data = videos
    video = read_video(data["long"], 8)
    assert video.num_video_frames == LEVELS
    assert video.indices == [0, 1, 2, 4, 5, 7, 8, 10]
    assert frame_numbers(video) == video.indices
    assert all(f.mode == "RGB" and f.size == (96, 64) for f in video.frames)


def test_short_and_one_frame_videos_repeat_frames(videos):
    _, data = videos
    short = read_video(data["short"], 8)
    assert short.num_video_frames == 3 and frame_numbers(short) == [0, 0, 0, 0, 1, 1, 1, 2]
    one = read_video(data["one"], 4)
    assert one.indices == [0] * 4 and frame_numbers(one) == [0] * 4
    assert all(np.array_equal(np.asarray(f), np.asarray(one.frames[0])) for f in one.frames)


def test_frames_folder_is_a_video_in_natural_name_order(videos):
    _, data = videos
    folder = read_video(data["frames"], 8)  # files 1.png ... 11.png: "10.png" sorts after "9.png"
    assert folder.num_video_frames == LEVELS and folder.indices == [0, 1, 2, 4, 5, 7, 8, 10]
    assert frame_numbers(folder) == folder.indices
    # lossless frames: exactly the pictures written
    assert np.array_equal(np.asarray(folder.frames[3]), np.asarray(grey_frames(LEVELS)[4]))


def _audio_only(path):
    """A WAV file: a container PyAV opens, with an audio stream and no video stream."""
    import av

    with av.open(path, mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def test_every_bad_video_input_is_a_named_error(videos):
    root, data = videos
    (root / "empty.mp4").write_bytes(b"")
    (root / "junk.mp4").write_bytes(b"not a video at all " * 50)
    full = open(data["long"], "rb").read()
    (root / "cut.mp4").write_bytes(full[: len(full) // 3])
    (root / "empty_folder").mkdir()
    bad_frames = root / "bad_frames"
    write_frames_folder(str(bad_frames), grey_frames(4), ext="jpg")
    (bad_frames / "3.jpg").write_bytes(b"\xff\xd8 truncated")
    cases = {
        str(root / "missing.mp4"): "no such file",
        str(root / "empty.mp4"): "empty file",
        str(root / "junk.mp4"): "Invalid data",
        str(root / "cut.mp4"): "Invalid data",
        str(root / "empty_folder"): "holds no images",
        str(bad_frames): "3.jpg",
        _audio_only(str(root / "audio.wav")): "no video stream",
    }
    for path, reason in cases.items():
        with pytest.raises(VideoReadError, match=reason) as info:
            read_video(path, 4)
        assert path in str(info.value), f"the error must name the file: {info.value}"
