"""The training dataset: LLaVA conversations + images + a box file -> samples for both branches.

Shape shorthand: L = text tokens of a sample, n = images of a sample (0 text-only, 1 image, T frames of a video),
N_i = boxes of image (frame) i.

Per launch (``__init__``): the text is tokenised once through XTuner (``llava_map_fn`` -> ``template_map_fn`` ->
``encode_fn``, via ``process_hf_dataset``), or loaded pre-tokenised (``offline_processed_text_folder``, written by
``xtuner/tools/process_untokenized_llava_data.py`` from ``dataset.text_data``); the box file is read into flat arrays
and each image sample is matched to its entry. Per sample (``__getitem__``): decode the image, resize it to the
uint8 high-res view, apply the box rules. Nothing else is done in the hot path: normalising and the low-res view
are the model's data preprocessor's work, on the device (``uint8_views``).

Video samples (``"video"`` instead of ``"image"``, ``<video>`` in the text; SPEC 1.8): ``num_frames`` frames chosen
by :func:`read_video` (a video file or a frames folder under ``video_folder``), each through the same
:class:`ImageViews` as an image (padded to a square: the released code centre-cropped video frames instead), each with
its own boxes from the video's box entry (one item per frame, the same frame choice). The text's ``<video>`` is
tokenised by XTuner as an ``<image>`` and then marked ``VIDEO_TOKEN_INDEX`` (-201); the model puts the T frames'
tokens there. Text-only, image and video samples mix freely in one dataset and one batch.

Bad data (``on_bad_sample``): ``'raise'`` stops with a :class:`BadSampleError` naming every bad sample (id, file,
line/image); ``'skip'`` leaves samples found bad at start-up out of the dataset and logs a counted summary. An image
that turns out unreadable in ``__getitem__`` cannot leave the dataset (the sampler has already counted it), so under
``'skip'`` the next index is returned in its place, counted in ``num_replaced`` and logged, and the returned sample
lists what it replaced under ``replaced`` (``BadSample.record()`` each), which the batch carries to the training loop
(:class:`~mg_llava.engine.BadSamplesHook` writes every one to the work dir, also from DataLoader workers and other
ranks).

In a config (XTuner style)::

    train_dataset = dict(
        type=LLaVABoxDataset,
        data_path=data_path,                      # or offline_processed_text_folder=...
        image_folder=image_folder,
        box_file=box_file,
        tokenizer=tokenizer,
        image_views=dict(type=ImageViews, image_processor=image_processor, high_res=768),
        template_map_fn=dict(type=template_map_fn_factory, template=PROMPT_TEMPLATE.vicuna),
        max_length=2048 - 576,
        max_boxes=100,
        on_bad_sample="raise",
    )
    train_dataloader = dict(
        dataset=train_dataset,
        sampler=dict(type=LengthGroupedSampler, length_property="modality_length", per_device_batch_size=...),
        collate_fn=dict(type=llava_box_collate_fn),
        ...)
"""
import logging
import os
import os.path as osp
from collections import Counter
from typing import List, Optional

import numpy as np
import torch
from datasets import Dataset as HFDataset
from datasets import load_from_disk
from mmengine.logging import print_log
from torch.utils.data import Dataset
from xtuner.dataset.huggingface import process_hf_dataset
from xtuner.dataset.map_fns import llava_map_fn
from xtuner.utils import IMAGE_TOKEN_INDEX

from ..image_io import ImageDecodeError
from ..registry import MODELS, build
from .box_file import load_box_file
from .box_rules import MAX_BOXES, NMS_IOU_THRESHOLD
from .box_table import BoxTable
from .conversations import BAD_SAMPLE_POLICIES, BadSample, BadSampleError, apply_bad_sample_policy, read_llava_file
from .anyres_views import AnyResImageViews, AnyResPixelView
from .image_views import ImageViews, load_image
from .released_boxes import BOX_RULES, apply_box_rule
from .sample import assemble_sample, mark_video_token, sequence_length, video_as_image
from .video import NUM_FRAMES, VIDEO_TOKEN_INDEX, VideoReadError, read_video

TEXT_COLUMNS = ("sample_index", "where", "id", "image", "input_ids", "labels", "length")  # and "video" if any
MAX_CONSECUTIVE_REPLACEMENTS = 16  # unreadable images in a row before '__getitem__' gives up
LOG_FIRST_EVENTS = 10  # per kind of event; afterwards every LOG_EVERY_EVENTS-th is logged with its running count
LOG_EVERY_EVENTS = 1000
# A sample served in place of unreadable ones lists them under this key (BadSample.record() each); the collate hands
# them on in ``data_samples`` and mg_llava.engine.BadSamplesHook writes them to the work dir.
REPLACED_KEY = "replaced"


@MODELS.register_module()
class LLaVABoxDataset(Dataset):
    """LLaVA-format conversations with images and object boxes.

    Args:
        image_folder: root that the samples' ``image`` paths are relative to.
        image_views: an :class:`ImageViews` (or its config): the two views and their geometry.
        data_path: LLaVA ``.json`` / ``.jsonl`` file; not needed with ``offline_processed_text_folder``.
        tokenizer: tokenizer (or its config) for ``data_path``.
        box_file: box file in the released format (:func:`load_box_file`); None means no entries.
        offline_processed_text_folder: a folder saved from ``dataset.text_data`` (XTuner's offline mode).
        dataset_map_fn, template_map_fn: XTuner map functions (``template_map_fn`` as
            ``dict(type=template_map_fn_factory, template=...)``).
        max_length: text tokens kept per sample (image and box tokens come on top).
        max_boxes, iou_threshold: the box rules (:func:`prepare_boxes`).
        box_rule: ``'clean'`` (the default, for new models) or ``'released'``: the rules the released checkpoints
            were trained with (:mod:`.released_boxes`), to fine-tune them on the distribution they saw.
        on_bad_sample: ``'raise'`` or ``'skip'`` (see the module docstring).
        allow_missing_boxes: an image sample without a box entry gets zero boxes (counted and logged) instead of
            being a bad sample.
        num_proc: processes for tokenisation (``datasets.map``); default min(32, CPUs), 1 works in-process.
        box_cache_dir: keep the parsed box file there as memory-mapped arrays (:func:`load_box_file`), so later
            launches and every rank skip the JSON parse.
        video_folder: root of the samples' ``video`` paths (default: ``image_folder``).
        num_frames: T, frames sampled per video (8 in the released recipe).
        max_positions, image_tokens: with both, a sample whose LLM sequence (text + ``image_tokens`` per image or
            frame + its boxes; :func:`~mg_llava.dataset.sample.sequence_length`) would pass the LLM's ``max_positions``
            raises a :class:`BadSampleError` naming it when loaded (the video recipe sets them; see the README's
            sequence budget).
        uint8_views: hand over the high-res view only, as uint8 (the default, for training: the model's
            :class:`~mg_llava.model.ViewsDataPreprocessor` normalises it and makes the low-res view on the device,
            bit for bit as :class:`ImageViews` does). False: both float views, as chat and evaluation build them.
        resize_on_device: with ``uint8_views``, hand over each decoded image (and video frame) as it is, uint8
            (3, H, W), under ``images``; the data preprocessor pads it and resizes it to S_high on the device,
            equal to Pillow's resize (:func:`~mg_llava.dataset.image_views.square_view`). This takes the resize,
            most of a sample's CPU time, off the loader; on a GPU it costs little, on a CPU more than Pillow, so the
            GPU recipes turn it on and the tiny CPU configs keep the loader's Pillow resize. Any-resolution tiles
            (:class:`AnyResImageViews`) are cut from the canvas on the CPU, so they keep the loader's resize.

    A sample is a dict: ``id`` (str), ``input_ids`` / ``labels`` LongTensor (L,), ``pixel_values_aux``
    (n, 3, S_high, S_high) uint8 (float32 and normalised, plus ``pixel_values`` (n, 3, S_low, S_low), without
    ``uint8_views``; with ``resize_on_device``, ``images`` instead: a list of n uint8 (3, H_i, W_i)), ``boxes``
    list of n FloatTensor (N_i, 4) xyxy in high-res input pixels; a video sample has
    n = T (one row per frame, in time order) and ``frames_per_video`` = [T] (``[]`` for other samples). With
    :class:`AnyResImageViews` an image sample also has ``pixel_values_tiles`` (rows x cols, 3, S_low, S_low), its
    crops row-major (uint8, or float32 and normalised without ``uint8_views``), and ``image_tiles`` [(rows, cols,
    W, H)]; ``pixel_values`` is then the global view.
    """

    def __init__(
        self,
        image_folder: str,
        image_views,
        data_path: Optional[str] = None,
        tokenizer=None,
        box_file: Optional[str] = None,
        offline_processed_text_folder: Optional[str] = None,
        dataset_map_fn=llava_map_fn,
        template_map_fn=None,
        max_length: Optional[int] = None,
        max_boxes: int = MAX_BOXES,
        iou_threshold: float = NMS_IOU_THRESHOLD,
        on_bad_sample: str = "raise",
        allow_missing_boxes: bool = False,
        num_proc: Optional[int] = None,
        box_cache_dir: Optional[str] = None,
        video_folder: Optional[str] = None,
        num_frames: int = NUM_FRAMES,
        box_rule: str = "clean",
        uint8_views: bool = True,
        resize_on_device: bool = False,
        max_positions: Optional[int] = None,
        image_tokens: Optional[int] = None,
    ):
        super().__init__()
        if on_bad_sample not in BAD_SAMPLE_POLICIES:
            raise ValueError(f"on_bad_sample must be one of {BAD_SAMPLE_POLICIES}, got {on_bad_sample!r}")
        if box_rule not in BOX_RULES:
            raise ValueError(f"box_rule must be one of {BOX_RULES}, got {box_rule!r}")
        self.image_folder = image_folder
        self.video_folder = video_folder if video_folder is not None else image_folder
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.num_frames = num_frames
        self.image_views: ImageViews = build(image_views)
        self.uint8_views = bool(uint8_views)
        if resize_on_device and not uint8_views:
            raise ValueError("resize_on_device hands the decoded images to the data preprocessor; it needs uint8_views")
        self.resize_on_device = bool(resize_on_device) and not isinstance(self.image_views, AnyResImageViews)
        self.max_boxes = max_boxes
        self.iou_threshold = iou_threshold
        self.box_rule = box_rule
        self.max_length = max_length  # the released rule keeps 1 box per label near it
        if (max_positions is None) != (image_tokens is None):
            raise ValueError("max_positions and image_tokens go together (the sequence check needs both)")
        self.max_positions, self.image_tokens = max_positions, image_tokens
        self.on_bad_sample = on_bad_sample
        self.allow_missing_boxes = allow_missing_boxes
        self.skipped: List[BadSample] = []  # samples left out at start-up (policy 'skip')
        self.num_replaced = 0  # unreadable images replaced in __getitem__ (this process only)
        self.events = Counter()  # per-process counts of logged data events

        if offline_processed_text_folder is not None:
            if data_path is not None:
                print_log(
                    f"both data_path and offline_processed_text_folder are set; using {offline_processed_text_folder}",
                    logger="current",
                    level=logging.WARNING,
                )
            text_data = load_from_disk(offline_processed_text_folder)
            missing = [c for c in TEXT_COLUMNS if c not in text_data.column_names]
            if missing:
                raise ValueError(
                    f"{offline_processed_text_folder} lacks columns {missing}; save it from this dataset's text_data"
                )
            if "video" not in text_data.column_names:  # saved before video support, or from an image-only file
                text_data = text_data.add_column("video", [None] * len(text_data))
            self.source = offline_processed_text_folder
        else:
            if data_path is None or tokenizer is None or max_length is None:
                raise ValueError("give data_path, tokenizer and max_length, or offline_processed_text_folder")
            text_data = self._tokenize(data_path, tokenizer, dataset_map_fn, template_map_fn, max_length, num_proc)
            self.source = data_path

        self.box_table: Optional[BoxTable] = (
            load_box_file(box_file, strict=on_bad_sample == "raise", cache_dir=box_cache_dir)
            if box_file is not None
            else None
        )
        # box_rows: (len,) int64, the box-table row of each sample's entry; -1 for none (text-only, allowed missing)
        self.text_data, self.box_rows = self._match_boxes(text_data, box_file)
        self._modality_length: Optional[List[int]] = None

    # ----------------------------------------------------------------------------------------- start-up work
    def _tokenize(self, data_path, tokenizer, dataset_map_fn, template_map_fn, max_length, num_proc) -> HFDataset:
        num_proc = num_proc or min(32, os.cpu_count() or 1)
        map_num_proc = num_proc if num_proc > 1 else None  # datasets forks a pool for any number given
        records, bad = read_llava_file(data_path)
        total = len(records) + len(bad)
        apply_bad_sample_policy(bad, self.on_bad_sample, total, data_path)
        self.skipped.extend(bad)
        if not records:
            raise ValueError(f"{data_path}: no usable samples (of {total})")
        # XTuner's map functions know only <image>: a video's <video> goes through them as one, marked -201 below.
        for record in records:
            if record["video"] is not None:
                record["conversations"] = [dict(turn, value=video_as_image(turn["value"]))
                                           for turn in record["conversations"]]
        text_data = process_hf_dataset(
            dataset=HFDataset.from_list(records),
            tokenizer=tokenizer,
            max_length=max_length,
            dataset_map_fn=dataset_map_fn,
            template_map_fn=template_map_fn,
            split=None,
            remove_unused_columns=False,
            pack_to_max_length=False,
            with_image_token=True,
            map_num_proc=map_num_proc,
        )
        text_data = text_data.remove_columns(["conversations", "conversation"])

        # XTuner drops samples left without a trained token (e.g. all answers cut by max_length) without a word;
        # truncation can also cut the image token off. Both are bad samples here, named and counted.
        kept = set(_column(text_data, "sample_index"))
        bad = [
            BadSample(f"no answer tokens within max_length={max_length}", r["id"], data_path, r["where"])
            for r in records
            if r["sample_index"] not in kept
        ]
        image_tokens = text_data.map(
            lambda batch: {"n": [ids.count(IMAGE_TOKEN_INDEX) for ids in batch["input_ids"]]},
            batched=True,
            remove_columns=text_data.column_names,
            num_proc=map_num_proc,
        )
        image_tokens = _column(image_tokens, "n")
        videos = _column(text_data, "video")
        good = []
        for row, (sample_id, where, image, video, count) in enumerate(
            zip(_column(text_data, "id"), _column(text_data, "where"), _column(text_data, "image"), videos,
                image_tokens)
        ):
            if count != (image is not None or video is not None):
                reason = f"image token truncated: max_length={max_length} cut the image token ({count} left)"
                bad.append(BadSample(reason, sample_id, data_path, where))
            else:
                good.append(row)
        apply_bad_sample_policy(bad, self.on_bad_sample, total, data_path)
        self.skipped.extend(bad)
        if any(video is not None for video in videos):
            text_data = text_data.map(_mark_video_token, batched=True, num_proc=map_num_proc)
        return text_data.select(good) if len(good) < len(text_data) else text_data

    def _match_boxes(self, text_data: HFDataset, box_file: Optional[str]):
        """Row of each image sample's box entry, or of a video's first frame (its frames follow it); -1 for
        text-only and allowed-missing samples. Applies the bad-sample policy."""
        source = self.source
        ids, wheres, images, videos = (_column(text_data, name) for name in ("id", "where", "image", "video"))
        table = self.box_table
        rows = np.full(len(ids), -1, dtype=np.int64)
        bad, missing = [], []
        for i, (sample_id, where, image, video) in enumerate(zip(ids, wheres, images, videos)):
            if image is None and video is None:
                continue
            row, keys = -1, (sample_id,) if video is None else (sample_id, video)
            if table is not None and video is None:
                row = table.row(sample_id)
            elif table is not None:
                frame_rows = table.frame_rows(sample_id) or table.frame_rows(video)
                if frame_rows is not None and len(frame_rows) != self.num_frames:
                    reason = (f"video box entry frames: {box_file} has boxes for {len(frame_rows)} frames, the "
                              f"dataset samples num_frames={self.num_frames}")
                    bad.append(BadSample(reason, sample_id, source, where))
                    continue
                row = frame_rows[0] if frame_rows is not None else -1
                if row >= 0 and frame_rows != list(range(row, row + len(frame_rows))):  # load_box_file keeps them so
                    raise RuntimeError(f"{box_file}: the frames of video entry {sample_id!r} are not stored together")
            if row >= 0:
                rows[i] = row
            elif table is not None and any(key in table.bad for key in keys):
                reason = next(table.bad[key] for key in keys if key in table.bad)
                bad.append(BadSample(f"bad box entry in {box_file}: {reason}", sample_id, source, where))
            elif self.allow_missing_boxes:
                missing.append(sample_id)
            else:
                reason = f"missing box entry: no entry for this id in {box_file or 'the box file (none given)'}"
                if video is not None:
                    reason = (f"missing box entry: no video entry for this id or {video!r} in "
                              f"{box_file or 'the box file (none given)'}")
                bad.append(BadSample(reason, sample_id, source, where))
        if missing:
            print_log(
                f"{source}: {len(missing)} image samples have no box entry in {box_file} and get zero boxes "
                f"(allow_missing_boxes=True), e.g. ids {missing[:5]}",
                logger="current",
                level=logging.WARNING,
            )
        apply_bad_sample_policy(bad, self.on_bad_sample, len(ids), source)
        self.skipped.extend(bad)
        if not bad:
            return text_data, rows
        bad_ids = {b.sample_id for b in bad}
        good = [i for i, (sample_id, image, video) in enumerate(zip(ids, images, videos))
                if (image is None and video is None) or sample_id not in bad_ids]
        return text_data.select(good), rows[good]

    # ----------------------------------------------------------------------------------------- sampler support
    @property
    def modality_length(self) -> List[int]:
        """Text length per sample, negative for text-only samples (XTuner's ``LengthGroupedSampler`` convention)."""
        if self._modality_length is None:
            lengths = np.asarray(_column(self.text_data, "length"), dtype=np.int64)
            self._modality_length = np.where(np.asarray(self.modality) > 0, lengths, -lengths).tolist()
        return self._modality_length

    @property
    def modality(self) -> List[int]:
        """Per sample: 0 text only, 1 image, 2 video (read by :class:`ModalityLengthGroupedSampler`)."""
        images, videos = _column(self.text_data, "image"), _column(self.text_data, "video")
        return [2 if video is not None else int(image is not None) for image, video in zip(images, videos)]

    def __len__(self) -> int:
        return len(self.text_data)

    # ----------------------------------------------------------------------------------------- hot path
    def __getitem__(self, index: int) -> dict:
        replaced = []
        for attempt in range(MAX_CONSECUTIVE_REPLACEMENTS + 1):
            current = (index + attempt) % len(self)
            try:
                sample = self._check_positions(self._load(current), current)
            except ImageDecodeError as err:
                row = self.text_data[current]
                kind = "video" if row.get("video") else "image"
                bad = BadSample(f"unreadable {kind} ({err.reason}): {err}", row["id"], self.source, row["where"])
                if self.on_bad_sample == "raise":
                    raise BadSampleError([bad]) from err
                self.num_replaced += 1
                replaced.append(bad.record())
                served_by = (current + 1) % len(self)
                self._log_event("replaced", f"{bad.describe()}; index {current} served by index {served_by}")
                continue
            if replaced:  # travels with the batch to the main process (DataLoader workers keep their own counts)
                sample[REPLACED_KEY] = replaced
            return sample
        raise RuntimeError(
            f"{MAX_CONSECUTIVE_REPLACEMENTS + 1} consecutive samples from index {index} have unreadable images; "
            f"check {self.image_folder}"
        )

    def _load(self, index: int) -> dict:
        row = self.text_data[index]
        text = (row["id"], torch.tensor(row["input_ids"], dtype=torch.long),
                torch.tensor(row["labels"], dtype=torch.long))
        views = self.image_views
        if row.get("video") is not None:
            return self._load_video(index, row, text)
        if row["image"] is None:
            return assemble_sample(*text, self._views(torch.zeros(0, 3, views.high_res, views.high_res,
                                                                  dtype=torch.uint8)), [])
        path = osp.join(self.image_folder, row["image"])
        if self.resize_on_device:
            decoded, size = load_image(path, min_side=views.reduced_decode_side)  # ImageDecodeError, named
            image = views.decoded(decoded, original_size=size)
            pixels = dict(images=[image.pixels])
        else:
            image = views.load_pixels(path)  # ImageDecodeError for every way the file can fail
            pixels = self._views(image.pixels[None])
        tiles = None
        if isinstance(image, AnyResPixelView):  # the crops in the same form as the high-res view
            tiles = (image.crops if self.uint8_views else views.normalize(image.crops), image.tile_row)
        return assemble_sample(*text, pixels, [self._boxes(index, image.geometry, row["id"], len(row["input_ids"]))],
                               tiles=tiles)

    def _check_positions(self, sample: dict, index: int) -> dict:
        """The sample, if its LLM sequence fits ``max_positions``; else a :class:`BadSampleError` naming it."""
        if self.max_positions is None:
            return sample
        ids = sample["input_ids"]
        placeholders = int(((ids == IMAGE_TOKEN_INDEX) | (ids == VIDEO_TOKEN_INDEX)).sum())
        length = sequence_length(len(ids), placeholders, len(sample["boxes"]), self.image_tokens,
                                 sum(len(b) for b in sample["boxes"]))
        if length > self.max_positions:
            row = self.text_data[index]
            raise BadSampleError([BadSample(
                f"LLM sequence of {length} tokens ({len(ids)} text, {len(sample['boxes'])} image(s)/frame(s) x "
                f"{self.image_tokens}, {sum(len(b) for b in sample['boxes'])} boxes) > max_positions="
                f"{self.max_positions}", row["id"], self.source, row["where"])])
        return sample

    def _views(self, pixels: torch.Tensor) -> dict:
        """uint8 (n, 3, S_high, S_high) -> the sample's view keys (see the class docstring)."""
        if self.resize_on_device:
            return dict(images=list(pixels))
        if self.uint8_views:
            return dict(pixel_values_aux=pixels)
        low, aux = self.image_views.finish(pixels)
        return dict(pixel_values=low, pixel_values_aux=aux)

    def _load_video(self, index: int, row: dict, text: tuple) -> dict:
        """T frames, each with both views and its own boxes (frame t's boxes: table row ``box_rows[index] + t``)."""
        path = osp.join(self.video_folder, row["video"])
        try:
            video = read_video(path, self.num_frames)
        except VideoReadError as err:
            raise ImageDecodeError(f"{path}: {err}", reason="unreadable", path=path) from err
        if isinstance(self.image_views, AnyResImageViews):
            raise ValueError(f"{self.source}: sample {row['id']!r} ({row['where']}) is a video, but the dataset's "
                             f"image views are any-resolution tiles, which this project builds for images only")
        if self.resize_on_device:
            views = [self.image_views.decoded(frame) for frame in video.frames]
            pixels = dict(images=[v.pixels for v in views])
        else:
            views = [self.image_views.pixels(frame) for frame in video.frames]
            frames = torch.stack([v.pixels.permute(1, 2, 0) for v in views]).permute(0, 3, 1, 2)  # channels-last
            pixels = self._views(frames)
        first = self.box_rows[index]
        boxes = [self._boxes(index, v.geometry, row["id"], len(row["input_ids"]), -1 if first < 0 else first + t)
                 for t, v in enumerate(views)]
        return assemble_sample(*text, pixels, boxes, frames_per_video=[len(views)])

    def _boxes(self, index: int, geometry, sample_id: str, text_length: int,
               row: Optional[int] = None) -> torch.Tensor:
        """(N, 4) boxes of sample ``index`` (or of table row ``row``) in high-res input pixels."""
        row = self.box_rows[index] if row is None else row
        if row < 0:
            boxes, scores, label_ids = np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32)
        else:
            boxes, scores, label_ids = self.box_table.arrays(row)
        prepared = apply_box_rule(self.box_rule, boxes, scores, label_ids, geometry, self.max_boxes,
                                  self.iou_threshold, text_length, self.max_length)
        if prepared.num_degenerate:
            self._log_event(
                "degenerate boxes",
                f"id {sample_id!r}: {prepared.num_degenerate} kept box(es) lie outside the "
                f"{geometry.width}x{geometry.height} image or have zero area; dropped",
            )
        return prepared.boxes

    def _log_event(self, kind: str, message: str) -> None:
        self.events[kind] += 1
        count = self.events[kind]
        if count <= LOG_FIRST_EVENTS or count % LOG_EVERY_EVENTS == 0:
            print_log(f"[{kind} #{count} in pid {os.getpid()}] {message}", logger="current", level=logging.WARNING)


def _mark_video_token(batch: dict) -> dict:
    """In video samples, the placeholder XTuner wrote as an image (-200) becomes the video's (-201)."""
    return {"input_ids": [mark_video_token(ids) if video is not None else ids
                          for ids, video in zip(batch["input_ids"], batch["video"])]}


def _column(dataset: HFDataset, name: str) -> list:
    """A whole column as a list (``datasets`` >= 4 returns a lazy column that is slow to iterate row by row)."""
    return dataset[name][:]
