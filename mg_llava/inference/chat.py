"""A multi-turn conversation about one image or video (or none) with a loaded MG-LLaVA."""
from typing import List, Optional, Tuple

from .generation import generate
from .loading import LoadedModel
from .preprocess import ImageSource, PreparedImage, PreparedVideo
from .visual_tokens import visual_token_counts


class ChatSession:
    """Keeps the turns so far and the prepared image or video (views and boxes are computed once).

    Args:
        loaded: a :class:`LoadedModel`.
        image: a path, encoded bytes or PIL image; None for text-only chat.
        boxes: what :meth:`Preprocessor.prepare_image` takes: None (zero boxes), ``(BoxTable, id)``, a box-file
            entry, or a box generator.
        max_new_tokens, temperature, top_p: decoding (greedy when ``temperature`` is 0).
        streamer: a ``transformers`` streamer that receives each answer's tokens as they are generated.
        video: a video file or frames folder instead of an image; ``boxes`` as :meth:`Preprocessor.prepare_video`
            takes them.
    """

    def __init__(self, loaded: LoadedModel, image: Optional[ImageSource] = None, boxes=None,
                 max_new_tokens: int = 512, temperature: float = 0.0, top_p: float = 1.0, streamer=None,
                 video: Optional[str] = None):
        if image is not None and video is not None:
            raise ValueError("chat about one image or one video, not both")
        self.loaded = loaded
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.streamer = streamer
        self.history: List[Tuple[str, str]] = []
        self.image: Optional[PreparedImage] = None
        self.video: Optional[PreparedVideo] = None
        self.last_visual_tokens: Optional[dict] = None  # the last answer's visual tokens (see visual_token_counts)
        if image is not None:
            self.image = loaded.preprocessor.prepare_image(image, boxes, where="chat image")
        if video is not None:
            self.video = loaded.preprocessor.prepare_video(video, boxes, where="chat video")

    @property
    def num_boxes(self) -> int:
        if self.video is not None:
            return self.video.num_boxes
        return 0 if self.image is None else len(self.image.boxes)

    def sample(self, question: str) -> dict:
        """The model input for ``question`` after the turns so far (a dataset-format sample)."""
        return self.loaded.preprocessor.sample(question, self.history, self.image, video=self.video)

    def ask(self, question: str) -> str:
        preprocessor = self.loaded.preprocessor
        sample = self.sample(question)
        answer = generate(self.loaded.model, preprocessor.tokenizer, [sample],
                          max_new_tokens=self.max_new_tokens, stop_words=preprocessor.stop_words,
                          temperature=self.temperature, top_p=self.top_p, streamer=self.streamer,
                          device=self.loaded.device)[0]
        self.last_visual_tokens = visual_token_counts(self.loaded.model, [sample])[0]
        self.history.append((question, answer))
        return answer

    def reset(self) -> None:
        self.history.clear()
