"""What every tagger provides: ``tag(images) -> tags per image`` and, when it has one, its ``vocabulary``."""
from typing import List, Optional, Sequence, Union

import torch


class Tagger:
    """Names what is in each image; the detector then looks for those names.

    ``vocabulary`` lists every tag the tagger can emit (``None`` when open-ended); the box generator hands it to
    the detector up front so tag embeddings are computed once, in a fixed order.
    """

    vocabulary: Optional[List[str]] = None

    def tag(self, images: Sequence[torch.Tensor]) -> List[List[str]]:
        """B uint8 images (3, H_i, W_i) -> B lists of tags (possibly empty), most confident first."""
        raise NotImplementedError

    def describe(self) -> dict:
        """JSON-able settings that change the tags (recorded with a run; a resume must match them)."""
        return {"type": type(self).__name__}

    def to(self, device: Union[str, torch.device]) -> "Tagger":
        return self
