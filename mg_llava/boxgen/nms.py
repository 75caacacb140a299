"""Class-aware NMS at generation time (optional; the box file's consumer also runs NMS when it loads boxes)."""
import torch


def class_aware_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float):
    """Indices of the boxes kept by NMS run separately per label, highest score first.

    Args:
        boxes: (N, 4) float x1, y1, x2, y2, any pixel space (original pixels here).
        scores: (N,) float.
        labels: (N,) int, the class of each box; boxes of different classes never suppress each other.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    try:
        from mmcv.ops import batched_nms
    except ImportError as err:  # mmcv without compiled ops, or no mmcv at all
        raise ImportError(
            "NMS at generation time uses mmcv's compiled ops (mmcv.ops.batched_nms); install mmcv 2.1 built for "
            "your torch/CUDA (see requirements/constraints.txt), or generate without NMS and let the dataset run "
            "it at load time"
        ) from err
    _, keep = batched_nms(boxes.float().contiguous(), scores.float().contiguous(), labels,
                          dict(type="nms", iou_threshold=float(iou_threshold)))
    return keep
