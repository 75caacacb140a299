"""The model's mmengine data preprocessor: moves the batch to the device and finishes the image views there.

Shape shorthand: I = images in the batch (a video counts its T frames), S_high / S_low = the view sides.

The training data loader hands over the high-res view as uint8 (``pixel_values_aux`` (I, 3, S_high, S_high)) and no
low-res view: a quarter of the bytes of one float view to collate, share between processes and copy to the device,
and neither normalisation nor the resize on the loader's CPUs. Here, on the device, it becomes what
``ImageViews.__call__`` gives on the CPU, bit for bit, through the same functions
(:func:`~mg_llava.dataset.image_views.finish_views`): ``pixel_values_aux`` normalised (float32) and ``pixel_values``
its bilinear resize to S_low. From a dataset with ``resize_on_device`` the batch holds ``images`` instead, each
decoded image as it is (uint8 (3, H_i, W_i)); they are first padded and resized to S_high here, as Pillow resizes
them (:func:`~mg_llava.dataset.image_views.square_view`), then finished the same way. A uint8 ``pixel_values``
(tiles a loader made itself) is normalised the same way and kept, and so are any-resolution crops
(``pixel_values_tiles``). Float views (chat and evaluation build them on the
CPU) pass through unchanged.

The views leave as float32; each encoder casts them to its own dtype, and DeepSpeed's bf16 wrapper casts floating
inputs after this step, as it did with float views from the loader.

In a config: ``model = dict(type=MGLLaVAModel, ..., data_preprocessor=dict(type=ViewsDataPreprocessor,
mean=image_mean, std=image_std, low_res=low_res))`` with the image processor's mean and std.
"""
from typing import Optional, Sequence, Union

import torch
from mmengine.model import BaseDataPreprocessor
from PIL import Image

from mg_llava.dataset.image_views import finish_views, normalize_pixels, square_view
from mg_llava.registry import MODELS


@MODELS.register_module()
class ViewsDataPreprocessor(BaseDataPreprocessor):
    """Casts the batch to the model's device (mmengine's ``BaseDataPreprocessor``) and turns uint8 views into the
    normalised float views the encoders read.

    Args:
        mean, std: the image processor's ``image_mean`` / ``image_std`` (3 values each, 0-1 scale).
        low_res: S_low, the side of ``pixel_values`` made from the high-res view (336 real, 56 tiny).
        high_res: S_high, needed for batches of decoded ``images`` (768 real, 128 tiny).
        resample: the image processor's resample filter (``'bicubic'`` for CLIP, or ``'bilinear'``), for ``images``.
        non_blocking: passed to ``Tensor.to`` (with pinned loader memory, overlaps the copy).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], low_res: int, high_res: Optional[int] = None,
                 resample: Union[str, int] = "bicubic", non_blocking: bool = False):
        super().__init__(non_blocking=non_blocking)
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"expected 3-channel mean/std, got {list(mean)} / {list(std)}")
        if low_res < 1:
            raise ValueError(f"low_res must be >= 1, got {low_res}")
        # Plain floats, not buffers: a module cast to bf16 (DeepSpeed, .half()) would round buffers.
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.low_res = int(low_res)
        self.high_res = None if high_res is None else int(high_res)
        self.resample = Image.Resampling[resample.upper()] if isinstance(resample, str) else Image.Resampling(resample)
        # LLaVA's expand2square colour, as ImageViews.fill: the mean in 0-255, truncated
        self.fill = tuple(int(m * 255) for m in self.mean)

    @classmethod
    def from_image_views(cls, image_views, **kwargs) -> "ViewsDataPreprocessor":
        """The preprocessor matching an :class:`~mg_llava.dataset.ImageViews` (its mean, std and S_low)."""
        return cls(image_views.mean, image_views.std, image_views.low_res, image_views.high_res,
                   image_views.resample, **kwargs)

    def _stats(self, device: torch.device):
        return tuple(torch.tensor(v, dtype=torch.float32, device=device).view(3, 1, 1) for v in (self.mean, self.std))

    def finish(self, data: dict) -> dict:
        """``data`` (the collate's ``data`` dict, on the device) with uint8 views replaced by float views."""
        images = data.pop("images", None)
        if images is not None:
            if self.high_res is None:
                raise ValueError("the batch holds decoded images (the dataset's resize_on_device); give the data "
                                 "preprocessor high_res to make their views")
            data["pixel_values_aux"] = torch.stack([square_view(image, self.fill, self.high_res, self.resample)
                                                    for image in images])
        aux, low = data.get("pixel_values_aux"), data.get("pixel_values")
        tiles = data.get("pixel_values_tiles")
        if tiles is not None and tiles.dtype == torch.uint8:  # any-resolution crops: normalised as the views
            data["pixel_values_tiles"] = normalize_pixels(tiles, *self._stats(tiles.device))
        if aux is None or aux.dtype != torch.uint8:
            if low is not None and low.dtype == torch.uint8:
                data["pixel_values"] = normalize_pixels(low, *self._stats(low.device))
            return data
        mean, std = self._stats(aux.device)
        made_low, data["pixel_values_aux"] = finish_views(aux, mean, std, self.low_res)
        if low is None:
            data["pixel_values"] = made_low
        elif low.dtype == torch.uint8:
            data["pixel_values"] = normalize_pixels(low, mean, std)
        return data

    def forward(self, data: dict, training: bool = False) -> dict:
        """``{'data': batch, 'data_samples': ...}`` (the collate's output) -> the same on the device, views
        finished."""
        data = self.cast_data(data)
        batch: Optional[dict] = data.get("data") if isinstance(data, dict) else None
        if batch is None:
            raise TypeError(f"expected the collate's {{'data': ..., 'data_samples': ...}}, got {type(data).__name__}"
                            f" with keys {sorted(data) if isinstance(data, dict) else '-'}")
        data["data"] = self.finish(batch)
        return data
