"""MG-LLaVA: XTuner's ``LLaVAModel`` with a high-res branch, a fusion and object tokens (SPEC 1).

Shape shorthand: B samples, L tokens, I images in the batch, N_i boxes of image i, T low-res tokens per image
(576), C low-res channels (1024), [C_k] high-res stage channels, H the LLM width.
"""
import logging
from collections import OrderedDict
from typing import Optional, Sequence

import torch
from mmengine import print_log
from mmengine.model import BaseModel
from xtuner.model import LLaVAModel
from xtuner.model.modules import ProjectorConfig, ProjectorModel
from xtuner.model.utils import get_peft_model_state_dict, make_inputs_require_grad

from mg_llava.registry import MODELS, WHOLE_MODEL_EXPORT, build
from .checkpoint import ANYRES_PREFIXES, LLM_PREFIXES, VISION_PREFIXES, load_trainable_state_dict
from .anyres_tokens import is_tiled
from .token_assembler import ImageParts, assemble, image_sequences
from .token_mean import mean_over_processes, tokens_per_process
from .token_norms import token_norms
from .video_tokens import run_in_chunks
from .work_dir import resolve_checkpoint
from .zero3 import is_partitioned, load_partitioned_state_dict


def mlp_projector(in_channels: int, llm_hidden_size: int, depth: int) -> ProjectorModel:
    """XTuner's projector, (..., in_channels) -> (..., H); keys ``model.0`` and ``model.2`` for depth 2."""
    return ProjectorModel(ProjectorConfig(visual_hidden_size=in_channels, llm_hidden_size=llm_hidden_size,
                                          depth=depth))


def module_class(cfg_or_module) -> type:
    """The class a config dict's ``type`` names (a class or a registry name), or a built module's class."""
    if not isinstance(cfg_or_module, dict):
        return type(cfg_or_module)
    kind = cfg_or_module["type"]
    return MODELS.get(kind) if isinstance(kind, str) else kind


def check_float_views(data: dict) -> None:
    """Raise when ``data`` still holds the loader's uint8 views (the data preprocessor did not run)."""
    aux, low = data.get("pixel_values_aux"), data.get("pixel_values")
    unfinished = [v for v in (aux, low) if v is not None and not v.is_floating_point()]
    if unfinished or (aux is not None and low is None):
        raise ValueError(f"the batch's views are not finished (pixel_values_aux {getattr(aux, 'dtype', None)}, "
                         f"pixel_values {getattr(low, 'dtype', None)}): the training loader hands over uint8 views "
                         f"that the model's data_preprocessor (ViewsDataPreprocessor) turns into float views; run "
                         f"the batch through model.data_preprocessor first, or give the model one")


@MODELS.register_module()
class MGLLaVAModel(LLaVAModel):
    """Each ``<image>`` becomes ``[p_F(fusion(E_L, S_3)) (T, H)][p_B(E_B) (N_i, H)]`` (SPEC 1.7).

    Takes the batch of ``docs/interfaces.md``: ``input_ids``/``attention_mask``/``labels`` (B, L),
    ``pixel_values`` (I, 3, s, s), ``pixel_values_aux`` (I, 3, S, S), ``boxes`` (I tensors (N_i, 4), xyxy pixels
    of the high-res input). Text-only samples consume no image; N_i may be 0. A ``<video>`` (-201) takes the next
    T frames (``frames_per_video``) and becomes their token blocks in time order (SPEC 1.8, ``video_tokens.py``).
    With ``anyres``, every image is tiled (``pixel_values_tiles``, ``image_tiles``) and its crops' unpadded grid
    comes between its fused tokens and its box tokens (``anyres_tokens.py``). The encoders hand over each image's
    blocks; ``token_assembler.py`` alone puts them in this order.

    Args:
        llm: the causal LM config or module (as for XTuner's ``LLaVAModel``).
        visual_encoder: the low-res encoder, returning tokens (I, T, C): ``CLIPVisionEncoder``.
        visual_encoder_aux: the high-res encoder, returning the stage maps: ``OpenCLIPConvNeXtEncoder``; None when
            neither the fusion nor the object branch reads it.
        fusion: ``ConvGateFusion`` / ``ChannelConcatFusion`` / ``NoFusion`` / ``PatchInfoMining`` /
            ``PerceiverResampler`` config, or ``MultiLayerDeformableFusion`` (MMFuser; it reads as many CLIP layers
            as the encoder's ``select_layer`` gives); its channels come from the encoders (every stage's for a
            fusion with ``reads_stages``, the last one's otherwise), and a fusion with ``takes_grid_tokens`` gets
            the low-res grid's token count.
        object_features: ``MultiScaleRoIFeatures`` config, or None for no object tokens (ablation).
        object_merge: None (the paper's: one projected token per box, appended), or a cross-attention ablation
            (Table 5b): ``FusedToBoxCrossAttention`` (the fused tokens read the boxes; no box tokens, no box
            projector) or ``BoxToFusedCrossAttention`` (the box features read the fused tokens, then are appended).
        freeze_llm: True in stage 1, False in stage 2. The encoders are always frozen; the fusion and both
            projectors always train.
        pretrained_pth: trainable weights to load once every module exists (a stage-1 result or a released
            checkpoint; see :func:`load_trainable_state_dict`).
        encoder_chunk_size: images (video frames) per call of each frozen encoder; bounds the encoders' peak
            memory for long videos and big batches. None: the whole batch at once.
        data_preprocessor: the mmengine data preprocessor the runner passes each batch through:
            :class:`~mg_llava.model.ViewsDataPreprocessor` (config or module) in every shipped config, which turns
            the loader's uint8 high-res view into both float views on the device. None: mmengine's default (moves
            the batch to the device only; the batch must then carry both float views).
        anyres: ``AnyResTokens`` config: take tiled (any-resolution) images; None: untiled images only. The crops go
            through the low-res encoder and the projector, so the fusion's output width must be the encoder's.
        projector_depth, llm_lora, use_activation_checkpointing, max_position_embeddings: as in ``LLaVAModel``.
    """

    def __init__(self, llm, visual_encoder, *, visual_encoder_aux, fusion, object_features, freeze_llm=False,
                 pretrained_pth: Optional[str] = None, projector_depth: int = 2, llm_lora=None,
                 use_activation_checkpointing: bool = True, max_position_embeddings: Optional[int] = None,
                 encoder_chunk_size: Optional[int] = None, data_preprocessor=None, anyres=None, object_merge=None):
        # XTuner builds the LLM and the low-res encoder (and a projector we replace below: its input width is the
        # fusion's). Checkpointing, LoRA and weight loading must see our extra modules, so they run further down.
        super().__init__(llm, visual_encoder, freeze_llm=freeze_llm, freeze_visual_encoder=True,
                         projector_depth=projector_depth, use_activation_checkpointing=False,
                         max_position_embeddings=max_position_embeddings)
        if data_preprocessor is not None:  # XTuner's LLaVAModel gives mmengine's default one
            self.data_preprocessor = build(data_preprocessor)
        self.encoder_chunk_size = encoder_chunk_size
        if not hasattr(self.visual_encoder, "hidden_size"):
            raise TypeError(f"visual_encoder must return tokens and expose hidden_size (CLIPVisionEncoder), "
                            f"got {type(self.visual_encoder).__name__}")
        channels = dict(low_channels=self.visual_encoder.hidden_size)
        fusion_class = module_class(fusion)
        grid_tokens = (self.visual_encoder.config.image_size // self.visual_encoder.config.patch_size) ** 2
        if getattr(fusion_class, "takes_grid_tokens", False):
            channels["grid_tokens"] = grid_tokens
        if visual_encoder_aux is None:
            self.visual_encoder_aux = None
        else:
            self.visual_encoder_aux = self._build_from_cfg_or_module(visual_encoder_aux)
            stages = list(self.visual_encoder_aux.out_channels)
            channels["high_channels"] = stages if getattr(fusion_class, "reads_stages", False) else stages[-1]
        self.fuse_module = build(fusion, **channels)
        # The training sequences reserve the low-res grid's tokens per image (max_length, the sequence check)
        fused_tokens = getattr(self.fuse_module, "num_tokens", grid_tokens)
        if fused_tokens > grid_tokens:
            raise ValueError(f"{type(self.fuse_module).__name__} gives {fused_tokens} tokens per image, more than the "
                             f"{grid_tokens} of the low-res grid that the training sequences reserve")
        layers, wanted = getattr(self.visual_encoder, "num_layers", 1), getattr(self.fuse_module, "in_layers", 1)
        if layers != wanted:
            raise ValueError(f"{type(self.fuse_module).__name__} reads {wanted} CLIP layer(s) but the visual encoder "
                             f"returns {layers} (its select_layer)")

        llm_hidden_size = self.llm.config.hidden_size
        self.projector = mlp_projector(self.fuse_module.out_channels, llm_hidden_size, projector_depth)
        self.object_features = self.bbox_projector = self.object_merge = None
        if object_features is not None:
            if self.visual_encoder_aux is None:
                raise ValueError("object tokens are read from the high-res encoder: visual_encoder_aux is required")
            self.object_features = build(object_features, in_channels=self.visual_encoder_aux.out_channels)
            if object_merge is not None:
                self.object_merge = build(object_merge, fused_channels=self.fuse_module.out_channels,
                                          box_channels=self.object_features.out_channels)
            if self.object_merge is None or self.object_merge.appends_boxes:
                self.bbox_projector = mlp_projector(self.object_features.out_channels, llm_hidden_size,
                                                    projector_depth)
        elif object_merge is not None:
            raise ValueError("object_merge merges object features into the image tokens: object_features is required")
        self.anyres = None if anyres is None else build(anyres, hidden_size=llm_hidden_size)
        crop_width = self.visual_encoder.hidden_size
        if self.anyres is not None and (layers != 1 or self.fuse_module.out_channels != crop_width):
            raise ValueError(f"tiled images: the crops' {self.visual_encoder.hidden_size}-wide tokens of {layers} CLIP "
                             f"layer(s) go to the projector, but {type(self.fuse_module).__name__} gives it "
                             f"{self.fuse_module.out_channels} channels; use one layer and a fusion of the same width")
        uses_high_res = self.fuse_module.uses_high_res or self.object_features is not None
        if uses_high_res != (self.visual_encoder_aux is not None):
            raise ValueError(f"{type(self.fuse_module).__name__} with object_features={object_features} "
                             f"{'needs' if uses_high_res else 'does not use'} visual_encoder_aux")

        if use_activation_checkpointing:
            # With the LLM's reentrant checkpointing, a sample whose embeddings do not require grad (text only, or
            # stage 1) would give its layers no gradient; XTuner marks the embedding output the same way.
            if hasattr(self.llm, "enable_input_require_grads"):
                self.llm.enable_input_require_grads()
            else:
                self.llm.get_input_embeddings().register_forward_hook(make_inputs_require_grad)
            self.gradient_checkpointing_enable()
        self.use_llm_lora = llm_lora is not None
        if self.use_llm_lora:
            self._prepare_llm_for_lora(llm_lora, use_activation_checkpointing)
        if pretrained_pth is not None:
            self.load_trainable(pretrained_pth)

    # Checkpointing is for the LLM only: the encoders run without autograd, and XTuner's projector checkpointing
    # would save little (two matmuls) while calling torch.utils.checkpoint in a form torch deprecates.
    def activation_checkpointing_enable(self):
        self.llm.gradient_checkpointing_enable()

    def activation_checkpointing_disable(self):
        self.llm.gradient_checkpointing_disable()

    def trainable_prefixes(self) -> tuple:
        """Top-level modules whose weights train and are saved (LoRA adds its adapters separately)."""
        prefixes = VISION_PREFIXES + (ANYRES_PREFIXES if self.anyres is not None else ())
        return prefixes + (LLM_PREFIXES if not self.freeze_llm and not self.use_llm_lora else ())

    def state_dict(self, *args, destination=None, prefix="", keep_vars=False):
        """Only the weights that train (SPEC 4 key names): the fusion, both projectors, and the LLM (stage 2) or
        its LoRA adapters."""
        full = BaseModel.state_dict(self, *args, prefix=prefix, keep_vars=keep_vars)
        keep = tuple(prefix + p for p in self.trainable_prefixes())
        trainable = OrderedDict((k, v) for k, v in full.items() if k.startswith(keep))
        if self.use_llm_lora:
            trainable.update(get_peft_model_state_dict(self.llm, state_dict=full))
        if destination is None:
            return trainable
        destination.update(trainable)
        return destination

    def load_trainable(self, path: str):
        """Load a trainable-weight checkpoint (ours or a released one, any of the formats of
        :func:`load_trainable_state_dict`). Keys the model does not have are an error, except ``bbox_projector.*``
        in a model without object tokens (ignored with a warning); vision-side modules the file lacks are reported.
        A training work dir (a stage-1 run) stands for its last checkpoint."""
        path = resolve_checkpoint(path)
        state_dict = load_trainable_state_dict(path)
        if self.bbox_projector is None:  # an ablation without object tokens, started from a stage 1 that had them
            kept = OrderedDict((k, v) for k, v in state_dict.items() if not k.startswith("bbox_projector."))
            if len(kept) < len(state_dict):
                print_log(f"{path}: this model has no object tokens; ignoring its {len(state_dict) - len(kept)} "
                          f"bbox_projector.* tensors", "current", level=logging.WARNING)
            state_dict = kept
        model_keys = set(BaseModel.state_dict(self))
        unexpected = sorted(set(state_dict) - model_keys)
        if unexpected:
            raise ValueError(f"{path}: {len(unexpected)} of {len(state_dict)} keys are not in this model, "
                             f"e.g. {unexpected[:5]}")
        missing = sorted(k for k in self.state_dict() if k not in state_dict and not k.startswith("llm."))
        if missing:
            print_log(f"{path} has no weights for {missing}; they keep their initial values", "current",
                      level=logging.WARNING)
        if is_partitioned(self):  # ZeRO-3 (Yi-1.5-34B's stage 2): gathered module by module
            load_partitioned_state_dict(self, state_dict)
        else:
            self.load_state_dict(state_dict, strict=False)
        print_log(f"Loaded {len(state_dict)} trainable tensors from {path}", "current")

    def encode_images(self, pixel_values: torch.Tensor, pixel_values_aux: Optional[torch.Tensor],
                      boxes: Optional[Sequence[torch.Tensor]]) -> ImageParts:
        """pixel_values (I, 3, s, s), pixel_values_aux (I, 3, S, S), boxes I x (N_i, 4) -> the parts of each image:
        grid tokens (I, T, H) and box tokens I x (N_i, H) (None without object tokens). The token assembler
        (``token_assembler.py``) orders them."""
        low = run_in_chunks(self.visual_encoder, pixel_values, self.encoder_chunk_size)
        stage_maps = None
        if self.visual_encoder_aux is not None:
            if pixel_values_aux is None:
                raise ValueError("this model reads the high-res view but the batch has no pixel_values_aux")
            stage_maps = run_in_chunks(self.visual_encoder_aux, pixel_values_aux, self.encoder_chunk_size)
        reads_stages = getattr(self.fuse_module, "reads_stages", False)
        fused = self.fuse_module(low, stage_maps if reads_stages or stage_maps is None else stage_maps[-1])
        box_features = None
        if self.object_features is not None:
            if boxes is None or len(boxes) != len(fused):
                raise ValueError(f"{len(fused)} images but {'no' if boxes is None else len(boxes)} box tensors")
            box_features = self.object_features(stage_maps, boxes, pixel_values_aux.shape[-2:])
            if self.object_merge is not None:  # F-to-B gives no box features back, B-to-F enhanced ones
                fused, box_features = self.object_merge(fused, box_features)
        image_tokens = self.projector(fused.to(self.projector.dtype))
        if box_features is None:
            return ImageParts(image_tokens, None)
        # One projector call for the whole batch; with zero boxes it still runs (on 0 rows), so the projector
        # stays in the graph and gets a (zero) gradient every step.
        box_tokens = self.bbox_projector(torch.cat(box_features).to(self.bbox_projector.dtype))
        return ImageParts(image_tokens, list(box_tokens.split([len(b) for b in box_features])))

    def encode_crops(self, pixel_values_tiles: torch.Tensor) -> torch.Tensor:
        """(n, 3, s, s) crops of tiled images -> (n, T, H): the low-res encoder and the projector, no fusion."""
        if not pixel_values_tiles.is_floating_point():
            raise ValueError(f"the batch's crops (pixel_values_tiles) are {pixel_values_tiles.dtype}: run the batch "
                             f"through model.data_preprocessor (ViewsDataPreprocessor) first")
        low = run_in_chunks(self.visual_encoder, pixel_values_tiles, self.encoder_chunk_size)
        return self.projector(low.to(self.projector.dtype))

    def prepare_llm_inputs(self, data: dict) -> dict:
        """The batch of docs/interfaces.md -> keyword arguments of the LLM (``inputs_embeds`` etc.)."""
        input_ids = data["input_ids"]
        attention_mask = data.get("attention_mask")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        images = []
        check_float_views(data)
        if "pixel_values" in data:
            parts = self.encode_images(data["pixel_values"], data.get("pixel_values_aux"), data.get("boxes"))
            crops = None
            if is_tiled(data, len(parts.grids), self.anyres):
                side = self.visual_encoder.config.image_size // self.visual_encoder.config.patch_size
                crops = self.anyres(self.encode_crops(data["pixel_values_tiles"]), data["image_tiles"], (side, side))
            images = image_sequences(parts.grids, crops, parts.boxes)
        return assemble(self.llm.get_input_embeddings(), input_ids, attention_mask, data.get("labels"), images,
                        data.get("frames_per_video"))

    def forward(self, data, data_samples=None, mode="loss"):
        if self.is_first_iter:
            self.to(data["input_ids"].device)  # as XTuner: puts QLoRA / ZeRO-3 buffers on the device once
            self.is_first_iter = False
        llm_inputs = self.prepare_llm_inputs(data)
        out = super().forward(llm_inputs, data_samples, mode)
        if mode == "loss":  # logged next to the loss: the visual tokens' size against the text's (token_norms.py)
            attention_mask = data.get("attention_mask")
            if attention_mask is None:
                attention_mask = torch.ones_like(data["input_ids"], dtype=torch.bool)
            out.update(token_norms(self.llm.get_input_embeddings(), data["input_ids"], attention_mask,
                                   llm_inputs["inputs_embeds"], llm_inputs["attention_mask"]))
        return out

    def compute_loss(self, data, data_samples=None):
        """The global batch's answer-token mean, whatever each process holds (``token_mean.py``; XTuner's
        ``LLaVAModel`` returns each process's own mean)."""
        return {"loss": self.llm(**data, num_items_in_batch=tokens_per_process(data["labels"])).loss}

    def parse_losses(self, losses):
        loss, log_vars = super().parse_losses(losses)
        return loss, mean_over_processes(log_vars)

    def to_hf(self, cfg, save_dir, fp32=False, save_pretrained_kwargs=None, save_format="xtuner", **kwargs):
        """What ``xtuner convert pth_to_hf <config> <pth> <dir>`` calls: the whole model, as ``tools/export.py``
        writes it (XTuner's LLaVA formats would drop the fusion and the box projector). fp16 unless ``fp32``.

        The export lives with the inference code, registered as ``WHOLE_MODEL_EXPORT`` (the model does not import
        the inference side, which imports the model)."""
        export = MODELS.get(WHOLE_MODEL_EXPORT)
        if export is None:
            raise RuntimeError(f"no {WHOLE_MODEL_EXPORT!r} in the mg_llava registry (mg_llava.inference.export "
                               f"registers it)")
        export(self, cfg, save_dir, fp32=fp32, save_pretrained_kwargs=save_pretrained_kwargs,
               save_format=save_format)
