"""AVG-LLaVA on MG-LLaVA or plain LLaVA: the LLM sees one granularity of each image's token grid, chosen per image
and instruction by a router (papers/related_systems.md, "AVG-LLaVA").

Shape shorthand: B samples, L tokens, I images, T grid tokens per image (576 real, 16 tiny), N_i box tokens of image
i, K granularities, T_k tokens of granularity k, H the LLM width.

Each ``<image>`` becomes ``[granularity k of the projected grid (T_k, H)][box tokens (N_i, H)]``. Only the 24 x 24
grid is pooled: the box tokens (one per object, MG-LLaVA only) are not a grid and always follow unpooled; the router
sees the grid's granularities and the instruction, not the boxes. A plain LLaVA is the same model with
``fusion=NoFusion``, ``visual_encoder_aux=None`` and ``object_features=None``.

Tiled (any-resolution) images (``anyres``, AVG-LLaVA's own setting on LLaVA-NeXT): the scaler pools every 24 x 24
grid, the global view's and each crop's, with the same window; the router scores each view's granularities with
the image's instruction tokens and averages over the views (``router.views="all"``, as the authors do; ``"global"``
reads the global view only), and its one decision per image applies to the global grid and all the crops. The
tiled ``<image>`` becomes ``[global grid at k][crop grid at k, unpadded, with row ends][box tokens]``; the crops'
pooled grid unpads in canvas geometry (``AnyResTokens``).

Training stages (``stage``), after the usual pretraining:
- ``"multi_granularity"`` (AVG-LLaVA's stage 3): one LLM pass per granularity over the same batch, the loss is their
  mean. What trains is what trains in MG-LLaVA's stage 2: the LLM (unless ``freeze_llm``), the fusion and both
  projectors; the encoders are frozen and the router is not used.
- ``"rglf"`` (stage 4, ranking-based granularity learning from LLM feedback): everything but the router is frozen.
  A no-grad LLM pass per granularity gives each sample's loss; the router learns to rank the granularities like
  those losses (:func:`~.losses.rglf_loss`; ``rglf_rank_loss`` picks the authors' rank-distance form or the
  earlier all-pairs mean). No language-model gradient reaches the router. Its checkpoints hold the router and every
  weight stage 3 trained, so one file deploys.
At inference (any mode but training's ``loss``) the router picks each image's granularity (or
``forced_granularity``, an index into the scaler's granularities, overrides it).
"""
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
from xtuner.utils import IGNORE_INDEX, IMAGE_TOKEN_INDEX

from mg_llava.registry import MODELS, build
from ..anyres_tokens import is_tiled
from ..checkpoint import ANYRES_PREFIXES, LLM_PREFIXES, ROUTER_PREFIXES, VISION_PREFIXES
from ..mg_llava_model import MGLLaVAModel, check_float_views
from ..token_assembler import assemble, image_sequences, image_views
from ..token_mean import tokens_per_process
from .losses import RANK_FORMS, rglf_loss
from .router import VisualGranularityRouter, select_instruction_tokens
from .scaler import VisualGranularityScaler

STAGES = ("multi_granularity", "rglf")


class EncodedImages(NamedTuple):
    """A batch's images at every granularity, before the LLM."""

    grids: List[torch.Tensor]  # K x (I, T_k, H): the (global view's) grid
    boxes: List[torch.Tensor]  # I x (N_i, H); (0, H) each for a model without object tokens
    crops: Optional[List[List[torch.Tensor]]]  # tiled images: K x I x (n_i, T_k, H); else None


@MODELS.register_module()
class AVGLLaVAModel(MGLLaVAModel):
    """MG-LLaVA (or LLaVA) with a visual granularity scaler and router.

    Args:
        llm, visual_encoder, visual_encoder_aux, fusion, object_features, freeze_llm, projector_depth, llm_lora,
            use_activation_checkpointing, max_position_embeddings: as in :class:`MGLLaVAModel`.
        scaler: ``VisualGranularityScaler`` config (AVG-LLaVA's five pools by default).
        router: ``VisualGranularityRouter`` config; its width and granularity sizes come from the model.
        stage: ``"multi_granularity"`` or ``"rglf"``, what a training step does (see the module docstring).
        rglf_ce_weight, rglf_margin: the RGLF loss's cross-entropy weight (0.1) and ranking margin (1.0).
        rglf_rank_loss: the ranking loss's form, ``"rank_distance"`` (the authors') or ``"pairwise_mean"``
            (:func:`~.losses.granularity_ranking_loss`).
        pretrained_pth: weights to load once every module (the router included) exists: a stage-2 or stage-3
            checkpoint, or an RGLF checkpoint.
    """

    def __init__(self, llm, visual_encoder, *, scaler=None, router=None, stage: str = "multi_granularity",
                 rglf_ce_weight: float = 0.1, rglf_margin: float = 1.0, rglf_rank_loss: str = "rank_distance",
                 pretrained_pth: Optional[str] = None, **kwargs):
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        if rglf_rank_loss not in RANK_FORMS:
            raise ValueError(f"rglf_rank_loss must be one of {RANK_FORMS}, got {rglf_rank_loss!r}")
        super().__init__(llm, visual_encoder, pretrained_pth=None, **kwargs)
        self.stage = stage
        self.rglf_ce_weight = rglf_ce_weight
        self.rglf_margin = rglf_margin
        self.rglf_rank_loss = rglf_rank_loss
        self.scaler = build(scaler if scaler is not None else dict(type=VisualGranularityScaler))
        config = self.visual_encoder.config
        self.num_grid_tokens = (config.image_size // config.patch_size) ** 2
        self.granularity_tokens = self.scaler.token_counts(self.num_grid_tokens)
        self.router = build(router if router is not None else dict(type=VisualGranularityRouter),
                            hidden_size=self.llm.config.hidden_size, granularity_tokens=self.granularity_tokens)
        if stage == "rglf":
            self.requires_grad_(False)
            self.router.requires_grad_(True)
        else:
            self.router.requires_grad_(False)
        self.forced_granularity: Optional[int] = None
        self.last_granularities: List[int] = []  # per image of the last routed batch: the granularity index
        self.last_visual_tokens: List[int] = []  # and the visual tokens it gave the LLM (T_k + N_i)
        if pretrained_pth is not None:
            self.load_trainable(pretrained_pth)

    def trainable_prefixes(self) -> tuple:
        if self.stage == "rglf":
            return VISION_PREFIXES + ROUTER_PREFIXES + (
                ANYRES_PREFIXES if self.anyres is not None else ()) + (() if self.use_llm_lora else LLM_PREFIXES)
        return super().trainable_prefixes()

    def granularity_index(self, num_tokens: int) -> int:
        """The index of the granularity with ``num_tokens`` grid tokens (e.g. 144 -> 2 for the real grid)."""
        if num_tokens not in self.granularity_tokens:
            raise ValueError(f"no granularity has {num_tokens} tokens; this model has {self.granularity_tokens}")
        return self.granularity_tokens.index(num_tokens)

    # ------------------------------------------------------------------------------------------------ tokens

    def encode_granularities(self, data: dict) -> EncodedImages:
        """The batch's images (and their crops when tiled) at every granularity, and their box tokens."""
        parts = self.encode_images(data["pixel_values"], data.get("pixel_values_aux"), data.get("boxes"))
        crops = None
        if is_tiled(data, len(parts.grids), self.anyres):
            pooled = self.scaler(self.encode_crops(data["pixel_values_tiles"]))  # K x (n, T_k, H)
            crops = [self.anyres.split(p, data["image_tiles"]) for p in pooled]
        boxes = parts.boxes if parts.boxes is not None else [grid[:0] for grid in parts.grids]  # (0, H) each
        return EncodedImages(self.scaler(parts.grids), boxes, crops)

    def image_tokens(self, data: dict, encoded: EncodedImages, choice: Sequence[int]) -> List[torch.Tensor]:
        """Each image's tokens at its granularity ``choice[i]``, ordered by the token assembler."""
        side = self.scaler.grid_side(self.num_grid_tokens)
        grids, crop_grids = [], None if encoded.crops is None else []
        for i, k in enumerate(choice):
            if encoded.crops is not None:
                crop_grids.append(self.anyres.grid(encoded.crops[k][i], data["image_tiles"][i].tolist(),
                                                   self.scaler.grid_shape(side, k)))
            grids.append(encoded.grids[k][i])
        return image_sequences(grids, crop_grids, encoded.boxes)

    def instruction_tokens(self, data: dict, image_tokens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Each image's top-Q prompt-token embeddings (I, Q, H), zero-padded, and their mask (I, Q).

        The prompt is its sample's real tokens that are not answer targets (``labels`` -100) and not image
        placeholders; at inference, where there are no labels, all of the sample's tokens. ``image_tokens``
        (I, T, H) rank them (mean cosine similarity).
        """
        input_ids, mask = data["input_ids"], _mask(data)
        labels = data.get("labels")
        prompt = mask & (input_ids != IMAGE_TOKEN_INDEX)
        if labels is not None:
            prompt &= labels == IGNORE_INDEX
        embed = self.llm.get_input_embeddings()
        width, q = image_tokens.shape[-1], self.router.num_instruction_tokens
        out = image_tokens.new_zeros(len(image_tokens), q, width)
        keep = torch.zeros(len(image_tokens), q, dtype=torch.bool, device=image_tokens.device)
        for i, b in enumerate(image_samples(input_ids, mask)):
            text = embed(input_ids[b][prompt[b]])
            chosen = select_instruction_tokens(text, image_tokens[i], q)
            out[i, :len(chosen)] = chosen.to(out.dtype)
            keep[i, :len(chosen)] = True
        return out, keep

    def router_logits(self, data: dict, encoded: EncodedImages) -> torch.Tensor:
        """(I, K): the router's scores of each image's granularities given its instruction. The instruction tokens
        are ranked against the global view; with ``router.views == "all"`` a tiled image's crops are scored with
        the same instruction tokens and the router averages over the image's views."""
        instruction, keep = self.instruction_tokens(data, encoded.grids[0])
        if encoded.crops is None or self.router.views == "global":
            return self.router(encoded.grids, instruction, keep)
        num_images = len(encoded.boxes)
        views = [1 + len(encoded.crops[0][i]) for i in range(num_images)]
        per_view = [image_views(grid, crops) for grid, crops in zip(encoded.grids, encoded.crops)]  # K x (V, T_k, H)
        rows = torch.repeat_interleave(torch.arange(num_images, device=keep.device),
                                       torch.tensor(views, device=keep.device))
        return self.router(per_view, instruction[rows], keep[rows], views=views)

    def route(self, data: dict, encoded: EncodedImages) -> torch.Tensor:
        """(I,) each image's granularity: the router's argmax, or ``forced_granularity``."""
        if self.forced_granularity is not None:
            return torch.full((len(encoded.boxes),), self.forced_granularity, dtype=torch.long,
                              device=encoded.grids[0].device)
        return self.router.select(self.router_logits(data, encoded))

    def _place(self, data: dict, images: Sequence[torch.Tensor]) -> dict:
        """The LLM inputs with ``images`` (from :meth:`image_tokens`) at the placeholders (the token assembler).
        AVG-LLaVA routes images only: a batch with a video fails there (no frames_per_video is passed)."""
        return assemble(self.llm.get_input_embeddings(), data["input_ids"], _mask(data), data.get("labels"), images)

    def prepare_llm_inputs(self, data: dict) -> dict:
        """The batch -> LLM inputs with each image's routed (or forced) granularity; records the choices."""
        check_float_views(data)
        if "pixel_values" not in data:
            self.last_granularities, self.last_visual_tokens = [], []
            return self._place(data, [])
        encoded = self.encode_granularities(data)
        choice = self.route(data, encoded)
        visual = self.image_tokens(data, encoded, choice.tolist())
        self.last_granularities = choice.tolist()
        self.last_visual_tokens = [len(v) for v in visual]
        return self._place(data, visual)

    # ------------------------------------------------------------------------------------------------ training

    def forward(self, data, data_samples=None, mode="loss"):
        check_float_views(data)
        if mode != "loss" or ("pixel_values" not in data and self.stage != "rglf"):
            return super().forward(data, data_samples, mode)
        if self.is_first_iter:
            self.to(data["input_ids"].device)
            self.is_first_iter = False
        if self.stage == "rglf":
            return self._rglf_loss(data)
        return self._multi_granularity_loss(data)

    def _multi_granularity_loss(self, data: dict) -> dict:
        encoded = self.encode_granularities(data)
        losses, tokens = [], None
        for k in range(len(encoded.grids)):
            llm_inputs = self._place(data, self.image_tokens(data, encoded, [k] * len(encoded.boxes)))
            if tokens is None:  # the answer tokens are the same at every granularity
                tokens = tokens_per_process(llm_inputs["labels"])
            losses.append(self.llm(**llm_inputs, num_items_in_batch=tokens).loss)
        out = dict(loss=torch.stack(losses).mean())
        out.update({f"lm_{t}": loss.detach() for t, loss in zip(self.granularity_tokens, losses)})
        return out

    def per_sample_losses(self, data: dict, encoded: EncodedImages) -> torch.Tensor:
        """(B, K): each sample's mean answer-token cross-entropy with each granularity (NaN without targets)."""
        columns = []
        for k in range(len(encoded.grids)):
            llm_inputs = self._place(data, self.image_tokens(data, encoded, [k] * len(encoded.boxes)))
            labels = llm_inputs.pop("labels")
            logits = self.llm(**llm_inputs).logits[:, :-1].float()
            targets = labels[:, 1:]
            token_loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets,
                                                           ignore_index=IGNORE_INDEX, reduction="none")
            counts = (targets != IGNORE_INDEX).sum(dim=1)
            columns.append(token_loss.sum(dim=1) / counts)  # 0 / 0 = NaN for a sample without targets
        return torch.stack(columns, dim=1)

    def _rglf_loss(self, data: dict) -> dict:
        if "pixel_values" not in data:  # text only: nothing to route; a zero loss that reaches every router weight
            zero = sum(p.sum() for p in self.router.parameters()) * 0
            return dict(loss_router_ce=zero, loss_router_rank=zero)
        with torch.no_grad():
            encoded = self.encode_granularities(data)
            sample_losses = self.per_sample_losses(data, encoded)  # (B, K)
        logits = self.router_logits(data, encoded)  # (I, K)
        lm_losses = sample_losses[image_samples(data["input_ids"], _mask(data))]  # (I, K)
        valid = torch.isfinite(lm_losses).all(dim=1)
        if not bool(valid.any()):  # no image has answer tokens: a zero loss that still reaches every router weight
            zero = logits.sum() * 0
            return dict(loss_router_ce=zero, loss_router_rank=zero)
        return rglf_loss(logits[valid], lm_losses[valid], ce_weight=self.rglf_ce_weight, margin=self.rglf_margin,
                         rank_form=self.rglf_rank_loss)


def _mask(data: dict) -> torch.Tensor:
    mask = data.get("attention_mask")
    return torch.ones_like(data["input_ids"], dtype=torch.bool) if mask is None else mask.bool()


def image_samples(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(I,) the sample index of each image placeholder, in batch (row-major) order."""
    is_image = (input_ids == IMAGE_TOKEN_INDEX) & attention_mask.bool()
    return is_image.nonzero()[:, 0]
