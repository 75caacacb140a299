"""Run box generation over one shard of an annotation file: load, tag, detect, write; resumable.

Sharding: sample ``pos`` (its place among the input's distinct ids) goes to shard ``pos % num_shards``. The shard
comes from ``shard``/``num_shards`` (e.g. a slurm array's task id) or, when neither is given, from torchrun's
``RANK``/``WORLD_SIZE``. Images are decoded in DataLoader workers; tagging and detection run batched on the device.

A video sample is boxed frame by frame: the ``num_frames`` frames the training dataset samples
(:func:`~mg_llava.dataset.read_video`, the same indices), all frames of a batch tagged and detected together; its
record holds one ``{boxes, scores, labels, tags}`` per frame and the frame indices (the released per-frame format
after merging). An unreadable video is skipped and counted like an unreadable image.
"""
import hashlib
import logging
import os
import os.path as osp
from typing import Callable, Optional

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from mg_llava.dataset.video import NUM_FRAMES, VideoReadError, read_video

from .images import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_base64, open_rgb, to_uint8_tensor
from .samples import read_samples
from .shards import ShardWriter, check_run, part_dir, read_part_records

logger = logging.getLogger(__name__)


def resolve_shard(shard: Optional[int] = None, num_shards: Optional[int] = None):
    """``(shard, num_shards)`` from the arguments, else from torchrun's environment, else ``(0, 1)``."""
    if shard is None and num_shards is None:
        if "WORLD_SIZE" in os.environ:
            shard, num_shards = int(os.environ.get("RANK", 0)), int(os.environ["WORLD_SIZE"])
        else:
            shard, num_shards = 0, 1
    if shard is None or num_shards is None:
        raise ValueError(f"give both shard and num_shards (got shard={shard}, num_shards={num_shards})")
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} is not in [0, {num_shards})")
    return shard, num_shards


class _ImageLoader(Dataset):
    """(pos, sample) -> decoded uint8 image (or a video's frames), or the reason it cannot be used."""

    def __init__(self, items, max_pixels, num_frames: int = NUM_FRAMES):
        self.items, self.max_pixels, self.num_frames = items, max_pixels, num_frames

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        pos, sample = self.items[index]
        where = f"sample {sample.id!r} ({sample.source})"
        if sample.video is not None:
            try:
                video = read_video(sample.video, self.num_frames)
            except VideoReadError as err:
                reason = "missing" if err.reason == "no such file or folder" else "unreadable"
                return dict(pos=pos, sample=sample, skipped=reason, error=f"{where}: {err}")
            return dict(pos=pos, sample=sample, frames=[to_uint8_tensor(f) for f in video.frames],
                        indices=video.indices, mode="RGB")
        try:
            source = sample.path if sample.path is not None else decode_base64(sample.b64, where)
            image, mode = open_rgb(source, self.max_pixels, where=where)
        except ImageDecodeError as skip:
            return dict(pos=pos, sample=sample, skipped=skip.reason, error=str(skip))
        return dict(pos=pos, sample=sample, image=to_uint8_tensor(image), mode=mode)


def _fingerprint(samples) -> str:
    """Hash of the ids and image sources in order: an edited input file cannot be resumed as if unchanged."""
    digest = hashlib.sha1()
    for sample in samples:
        image = sample.video if sample.video is not None else sample.path if sample.path is not None else sample.b64
        digest.update(f"{sample.id}\t{image}\n".encode("utf-8"))
    return digest.hexdigest()


def _one_thread(_):
    torch.set_num_threads(1)  # decoding workers must not fight the main process for cores


def run_shard(generator, annotation: str, out_dir: str, image_folder: Optional[str] = None,
              shard: Optional[int] = None, num_shards: Optional[int] = None, batch_size: int = 8,
              num_workers: int = 2, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS, id_key: Optional[str] = None,
              on_duplicate_conflict: str = "error", chunks_per_segment: int = 64,
              on_batch_end: Optional[Callable[[int], None]] = None, progress: bool = True,
              video_folder: Optional[str] = None, num_frames: int = NUM_FRAMES) -> dict:
    """Generate boxes for this shard's samples not yet done in ``out_dir``; returns counts for the shard.

    Args:
        generator: a :class:`~mg_llava.boxgen.generator.BoxGenerator` (already on its device).
        annotation: LLaVA JSON/JSONL or evaluation JSONL/TSV (see :mod:`.samples`).
        on_batch_end: called with the batch index after each batch is safely on disk.
        video_folder, num_frames: where videos are (default: ``image_folder``) and how many frames of each are
            boxed (the training dataset's ``num_frames``).
    """
    shard, num_shards = resolve_shard(shard, num_shards)
    samples, input_counts = read_samples(annotation, image_folder, id_key=id_key, on_conflict=on_duplicate_conflict,
                                         video_folder=video_folder)
    run = dict(
        input=osp.abspath(annotation), image_folder=osp.abspath(image_folder) if image_folder else None,
        id_key=id_key, max_pixels=max_pixels, num_shards=num_shards, num_samples=len(samples),
        samples_sha1=_fingerprint(samples), input_counts=input_counts, generator=generator.describe(),
    )
    if any(sample.video is not None for sample in samples):
        run.update(video_folder=osp.abspath(video_folder) if video_folder else None, num_frames=num_frames)
    check_run(out_dir, run)
    mine = [(pos, samples[pos]) for pos in range(shard, len(samples), num_shards)]
    writer = ShardWriter(part_dir(out_dir, shard, num_shards), chunks_per_segment=chunks_per_segment)
    done = read_part_records(writer.directory)
    pending = [(pos, s) for pos, s in mine if s.id not in done]
    if done:
        logger.info("shard %d/%d: resuming, %d of %d samples already done", shard, num_shards, len(done), len(mine))

    loader = DataLoader(_ImageLoader(pending, max_pixels, num_frames), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=list, worker_init_fn=_one_thread if num_workers else None)
    bar = tqdm(total=len(mine), initial=len(mine) - len(pending), unit="img", dynamic_ncols=True,
               desc=f"boxes shard {shard}/{num_shards}", disable=not progress)
    num_boxes = num_images = num_skipped = 0
    for batch_index, items in enumerate(loader):
        good = [item for item in items if "skipped" not in item]
        images = [image for item in good for image in item.get("frames", [item.get("image")])]
        try:
            results = generator.generate(images) if images else []
        except Exception as err:
            ids = [item["sample"].id for item in good]
            raise RuntimeError(f"box generation failed on the batch of samples {ids}: {err}") from err
        results = iter(results)
        records = []
        for item in items:
            base = dict(pos=item["pos"], id=item["sample"].id)
            if "skipped" in item:
                logger.warning("skipped %s", item["error"])
                records.append(dict(base, skipped=item["skipped"], error=item["error"]))
                num_skipped += 1
                continue
            if "frames" in item:
                frames = [next(results) for _ in item["frames"]]
                record = dict(base, video=item["sample"].video_name, frame_indices=item["indices"], frames=[
                    dict(boxes=r["boxes"], scores=r["scores"], labels=r["labels"], tags=r["tags"]) for r in frames])
                degenerate = sum(r["num_degenerate"] for r in frames)
                if degenerate:
                    record["num_degenerate"] = degenerate
                records.append(record)
                num_boxes += sum(len(r["boxes"]) for r in frames)
                num_images += len(frames)
                continue
            result = next(results)
            record = dict(base, boxes=result["boxes"], scores=result["scores"], labels=result["labels"],
                          tags=result["tags"])
            if result["num_degenerate"]:
                record["num_degenerate"] = result["num_degenerate"]
            if item["mode"] != "RGB":
                record["mode"] = item["mode"]
            records.append(record)
            num_boxes += len(result["boxes"])
            num_images += 1
        writer.write(records)
        bar.update(len(items))
        bar.set_postfix(boxes_per_img=f"{num_boxes / max(num_images, 1):.1f}", skipped=num_skipped)
        if on_batch_end is not None:
            on_batch_end(batch_index)
    bar.close()
    writer.finish(len(mine))
    return dict(shard=shard, num_shards=num_shards, samples=len(mine), resumed_done=len(mine) - len(pending),
                processed=len(pending), images=num_images, boxes=num_boxes, skipped=num_skipped)
