"""What every benchmark reader (:mod:`.benchmarks`, :mod:`.video_qa`) makes: one :class:`EvalItem` per prediction."""
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class EvalItem:
    """One prediction to make."""

    id: str  # unique per prediction: the benchmark's index, plus '@r' for round r of circular evaluation
    key: str  # the benchmark's index / question_id (box-file id)
    question: str  # the prompt text (the template and the <image> token are added by the preprocessor)
    image: str  # a path, or (encoded=True) the base64 text of the image, decoded when prepared
    target: dict = field(default_factory=dict)  # ground truth and metadata kept in the prediction record
    image_key: Optional[str] = None  # the box-file id of the image when it is another row's (MMBench references)
    encoded: bool = False
    video: bool = False  # ``image`` is a video file or frames folder


def with_suffix(question: str, suffix: str) -> str:
    """The question with the benchmark's answer instruction on its own line (none when ``suffix`` is empty)."""
    return f"{question}\n{suffix}" if suffix else question
