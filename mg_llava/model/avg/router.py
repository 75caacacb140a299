"""AVG-LLaVA's visual granularity router: one granularity per image, from the image and the instruction.

Shape shorthand: I images, K granularities, T_k tokens of granularity k, S = sum_k T_k, Q = the number of
instruction tokens kept (32), n the prompt tokens of one sample, H the LLM width.

    granularities (I, T_k, H) x K  ++  top-Q instruction tokens (I, Q, H)   -> (I, S + Q, H)
      -> one post-norm Transformer encoder layer (H, 8 heads, FFN = H, ReLU)
      -> MLP H -> H -> K (GELU)                    per-token logits (I, S + Q, K)
      -> voter: a learned weight per token, sum  -> (I, K)
      -> LayerNorm(K)                            -> logits (I, K)

With the real shapes S + Q = 576 + 288 + 144 + 72 + 36 + 32 = 1148 tokens. A tiled image (any resolution) has
several views (its global view and each crop); as AVG-LLaVA's authors do, each view is scored with the same
instruction tokens and the voter's sums are averaged over the image's views before the LayerNorm.

The choice is the argmax of the logits. Neither training stage passes the language model's gradient through the
choice (multi-granularity tuning does not route, RGLF trains the router on ranked losses only), so there is no
straight-through selection.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mg_llava.registry import MODELS


def select_instruction_tokens(text: torch.Tensor, image: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` rows of ``text`` (n, H) with the highest mean cosine similarity to ``image`` (T, H), in their
    original order; all n rows when n <= k."""
    if text.shape[0] <= k:
        return text
    similarity = F.normalize(text.float(), dim=-1) @ F.normalize(image.float(), dim=-1).T  # (n, T)
    keep = similarity.mean(dim=1).topk(k).indices.sort().values
    return text[keep]


@MODELS.register_module()
class VisualGranularityRouter(nn.Module):
    """Scores the K granularities of each image given its instruction.

    Args:
        hidden_size: H, the LLM width (the tokens come after the projector).
        granularity_tokens: T_k of each granularity, finest first, e.g. (576, 288, 144, 72, 36); fixes the voter.
        num_instruction_tokens: Q, the instruction tokens kept (32).
        num_heads: attention heads of the encoder layer (8).
        dropout: dropout inside the encoder layer.
        views: on tiled images, ``"all"`` (AVG-LLaVA's authors: the global view and every crop, logits averaged)
            or ``"global"`` (the global view only: this project's earlier reading, kept for models trained so).
    """

    VIEWS = ("all", "global")

    def __init__(self, hidden_size: int, granularity_tokens: Sequence[int], num_instruction_tokens: int = 32,
                 num_heads: int = 8, dropout: float = 0.0, views: str = "all"):
        super().__init__()
        if views not in self.VIEWS:
            raise ValueError(f"views must be one of {self.VIEWS}, got {views!r}")
        self.views = views
        self.granularity_tokens = tuple(int(t) for t in granularity_tokens)
        self.num_granularities = len(self.granularity_tokens)
        self.num_instruction_tokens = int(num_instruction_tokens)
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
        self.encoder = nn.TransformerEncoderLayer(hidden_size, num_heads, dim_feedforward=hidden_size,
                                                  dropout=dropout, activation="relu", batch_first=True,
                                                  norm_first=False)
        self.mlp = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.GELU(),
                                 nn.Linear(hidden_size, self.num_granularities))
        num_tokens = sum(self.granularity_tokens) + self.num_instruction_tokens
        self.voter = nn.Parameter(torch.full((num_tokens,), 1.0 / num_tokens))  # starts as the mean over tokens
        self.norm = nn.LayerNorm(self.num_granularities)

    @property
    def dtype(self) -> torch.dtype:
        return self.voter.dtype

    def forward(self, granularities: Sequence[torch.Tensor], instruction: torch.Tensor,
                instruction_mask: Optional[torch.Tensor] = None,
                views: Optional[Sequence[int]] = None) -> torch.Tensor:
        """granularities: K tensors (V, T_k, H), one row per view; instruction: (V, Q, H) (zero rows where a prompt
        had fewer than Q tokens), instruction_mask: (V, Q) True on real tokens; views: the number of consecutive
        rows of each image (all 1, V = I, when None) -> logits (I, K)."""
        counts = tuple(g.shape[1] for g in granularities)
        if counts != self.granularity_tokens or instruction.shape[1] != self.num_instruction_tokens:
            raise ValueError(f"the router was built for granularities {self.granularity_tokens} and "
                             f"{self.num_instruction_tokens} instruction tokens, got {counts} and "
                             f"{instruction.shape[1]}")
        tokens = torch.cat([*granularities, instruction], dim=1).to(self.dtype)  # (I, S + Q, H)
        num_images = tokens.shape[0]
        if instruction_mask is None:
            instruction_mask = torch.ones(instruction.shape[:2], dtype=torch.bool, device=tokens.device)
        keep = torch.cat([torch.ones(num_images, sum(counts), dtype=torch.bool, device=tokens.device),
                          instruction_mask.bool()], dim=1)  # (I, S + Q)
        hidden = self.encoder(tokens, src_key_padding_mask=~keep)
        token_logits = self.mlp(hidden) * keep[..., None]  # padded instruction slots cast no vote
        logits = torch.einsum("itk,t->ik", token_logits, self.voter)  # (V, K)
        if views is not None:
            if sum(views) != num_images or min(views, default=1) < 1:
                raise ValueError(f"views {list(views)} do not split the router's {num_images} rows")
            logits = torch.stack([part.mean(dim=0) for part in logits.split(list(views))])  # (I, K)
        return self.norm(logits)

    @staticmethod
    def select(logits: torch.Tensor) -> torch.Tensor:
        """logits (I, K) -> the chosen granularity of each image (I,), the argmax."""
        return logits.argmax(dim=-1)
