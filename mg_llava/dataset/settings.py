"""The settings a sample is made from, read once from a training config.

Training (``LLaVABoxDataset``), the sample answers during training (:class:`~mg_llava.engine.SampleAnswersHook`),
export and loading (:func:`mg_llava.inference.spec.spec_from_config`) and chat/evaluation (through that spec) all
take the tokenizer, prompt template, image views, text length, box rules and frame count from
:meth:`DataSettings.from_config`: the config's ``tokenizer`` and ``prompt_template``, the rest where the model trained
on them, in the config's training dataset (the settings a mixture hands to its sources; ``llava_dataset`` where a
tiny config keeps one). The configs derive all of them from the same top-level settings
(:mod:`mg_llava.config_settings`).
"""
import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from .box_rules import MAX_BOXES, NMS_IOU_THRESHOLD
from .video import NUM_FRAMES


def training_dataset(cfg):
    """The dataset config whose settings the model trained with: ``llava_dataset`` if the config keeps one (the tiny
    configs), else ``train_dataloader.dataset`` (a single dataset, or a mixture's shared settings)."""
    return cfg.get("llava_dataset") or cfg["train_dataloader"]["dataset"]


def _num_frames(cfg) -> int:
    """Frames per video of the config's video dataset (``video_dataset``, the training dataset or a part of it)."""
    train = cfg["train_dataloader"]["dataset"]
    for dataset in (cfg.get("video_dataset"), train, *train.get("datasets", [])):
        if dataset is not None and "num_frames" in dataset:
            return dataset["num_frames"]
    return NUM_FRAMES


@dataclass(frozen=True)
class DataSettings:
    """What turns a conversation and an image (or video) into a sample.

    Args:
        tokenizer: the LLM's tokenizer, or its config dict.
        prompt_template: the chat template (``PROMPT_TEMPLATE.<name>``).
        image_views: an :class:`~mg_llava.dataset.ImageViews`, or its config dict.
        max_length: text tokens kept per training sample (None: no limit, as at inference).
        max_boxes, iou_threshold, box_rule: the load-time box rules (:func:`~mg_llava.dataset.apply_box_rule`).
        num_frames: frames sampled per video.
    """

    tokenizer: Any
    prompt_template: Any
    image_views: Any
    max_length: Optional[int] = None
    max_boxes: int = MAX_BOXES
    iou_threshold: float = NMS_IOU_THRESHOLD
    box_rule: str = "clean"
    num_frames: int = NUM_FRAMES

    @classmethod
    def from_config(cls, cfg) -> "DataSettings":
        """The settings of ``cfg`` (an mmengine ``Config`` or a dict of its top-level variables)."""
        dataset = training_dataset(cfg)
        missing = [key for key in ("tokenizer", "image_views", "template_map_fn") if key not in dataset]
        if missing:
            raise ValueError(f"the config's training dataset has no {missing}: cannot tell how samples are made")
        # the config's own tokenizer and template where it has them (what --cfg-options tokenizer.* changes; the
        # configs derive the dataset's from the same settings), the rest as the dataset holds it
        tokenizer = cfg.get("tokenizer") or dataset["tokenizer"]
        template = cfg.get("prompt_template") or dataset["template_map_fn"]["template"]
        return cls(
            tokenizer=tokenizer,
            prompt_template=template,
            image_views=dataset["image_views"],
            max_length=dataset.get("max_length"),
            max_boxes=dataset.get("max_boxes", MAX_BOXES),
            iou_threshold=dataset.get("iou_threshold", NMS_IOU_THRESHOLD),
            box_rule=dataset.get("box_rule", "clean"),
            num_frames=_num_frames(cfg),
        )

    def replace(self, **changes) -> "DataSettings":
        """A copy with ``changes``; None values keep the current setting."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


__all__ = ["DataSettings", "training_dataset"]
