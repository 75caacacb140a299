"""Training data: LLaVA conversations + box files -> batches for both visual branches.

Public API (all registered in :data:`mg_llava.registry.MODELS`):

- :class:`ImageViews`, :class:`ViewGeometry`, :func:`load_image`: the two image views and their geometry.
- :class:`AnyResImageViews`: the same plus LLaVA-NeXT's any-resolution crops of the low-res view.
- :func:`load_box_file` (:mod:`.box_file`, cached by :mod:`.box_cache`), :class:`BoxTable` and its lookup
  :func:`find_entry` / :func:`entry_for_file` (:mod:`.box_table`), :func:`prepare_boxes` (:mod:`.box_rules`): the
  box file and the load-time box rules; :func:`prepare_boxes_released` reproduces the released code's rules
  (``box_rule='released'``).
- :class:`LLaVABoxDataset`, :func:`llava_box_collate_fn`: the dataset and the batch of docs/interfaces.md.
- :class:`ConcatLLaVABoxDataset`: several of them as one mixture (keeps ``modality_length``).
- :func:`read_video`, :func:`sample_frame_indices`: video decoding (PyAV or a frames folder) and the frame choice.
- :class:`DataSettings`: a config's tokenizer, template, views, lengths and box rules, read once.
- :class:`ModalityLengthGroupedSampler`: length-grouped batches of one modality (text, image or video).
- :data:`PROMPT_TEMPLATE`: XTuner's prompt templates plus ``chatml`` (Yi-1.5).
"""
from .anyres_views import AnyResImageViews, AnyResViews, TileGeometry
from .box_file import load_box_file
from .box_rules import MAX_BOXES, NMS_IOU_THRESHOLD, PreparedBoxes, prepare_boxes
from .box_table import BoxEntry, BoxTable, MissingBoxEntryError, entry_for_file, find_entry
from .collate import llava_box_collate_fn
from .concat import ConcatLLaVABoxDataset
from .conversations import BadSample, BadSampleError, check_sample, read_llava_file
from .image_views import ImageViews, PixelView, ViewGeometry, Views, finish_views, load_image
from .llava_box_dataset import LLaVABoxDataset
from .sampler import ModalityLengthGroupedSampler
from .settings import DataSettings, training_dataset
from .released_boxes import BOX_RULES, apply_box_rule, prepare_boxes_released
from .templates import CHATML_TEMPLATE, PROMPT_TEMPLATE
from .video import (DEFAULT_VIDEO_TOKEN, NUM_FRAMES, VIDEO_TOKEN_INDEX, VideoFrames, VideoReadError, read_video,
                    sample_frame_indices)

__all__ = [
    "AnyResImageViews",
    "AnyResViews",
    "BOX_RULES",
    "BadSample",
    "BadSampleError",
    "BoxEntry",
    "BoxTable",
    "CHATML_TEMPLATE",
    "ConcatLLaVABoxDataset",
    "DataSettings",
    "DEFAULT_VIDEO_TOKEN",
    "ImageViews",
    "LLaVABoxDataset",
    "MAX_BOXES",
    "MissingBoxEntryError",
    "ModalityLengthGroupedSampler",
    "NMS_IOU_THRESHOLD",
    "NUM_FRAMES",
    "PROMPT_TEMPLATE",
    "PixelView",
    "PreparedBoxes",
    "VIDEO_TOKEN_INDEX",
    "VideoFrames",
    "VideoReadError",
    "TileGeometry",
    "apply_box_rule",
    "ViewGeometry",
    "Views",
    "check_sample",
    "entry_for_file",
    "find_entry",
    "training_dataset",
    "finish_views",
    "llava_box_collate_fn",
    "load_box_file",
    "load_image",
    "prepare_boxes",
    "prepare_boxes_released",
    "read_llava_file",
    "read_video",
    "sample_frame_indices",
]
