"""The multi-granularity vision flow and the MG-LLaVA model (SPEC 1, 3, 4). Importing registers every module."""
from .anyres_tokens import AnyResTokens
from .avg import AVGLLaVAModel, VisualGranularityRouter, VisualGranularityScaler
from .channel_concat_fusion import ChannelConcatFusion
from .checkpoint import load_trainable_state_dict
from .clip_encoder import CLIPVisionEncoder
from .conv_gate_fusion import ConvGateFusion
from .convnext_encoder import OpenCLIPConvNeXtEncoder
from .mg_llava_model import MGLLaVAModel
from .multi_layer_deformable_fusion import MultiLayerDeformableFusion
from .no_fusion import NoFusion
from .object_cross_attention import BoxToFusedCrossAttention, FusedToBoxCrossAttention
from .object_features import MultiScaleRoIFeatures
from .patch_info_mining import PatchInfoMining
from .perceiver_resampler import PerceiverResampler
from .token_assembler import ImageParts, assemble, image_sequences, place_visual_tokens
from .views_data_preprocessor import ViewsDataPreprocessor
from .zero3 import wait_for_gloo_all_gathers

wait_for_gloo_all_gathers()

__all__ = [
    "AVGLLaVAModel",
    "AnyResTokens",
    "BoxToFusedCrossAttention",
    "CLIPVisionEncoder",
    "ChannelConcatFusion",
    "ConvGateFusion",
    "FusedToBoxCrossAttention",
    "ImageParts",
    "MGLLaVAModel",
    "MultiLayerDeformableFusion",
    "MultiScaleRoIFeatures",
    "NoFusion",
    "OpenCLIPConvNeXtEncoder",
    "PatchInfoMining",
    "PerceiverResampler",
    "VisualGranularityRouter",
    "ViewsDataPreprocessor",
    "VisualGranularityScaler",
    "assemble",
    "image_sequences",
    "load_trainable_state_dict",
    "place_visual_tokens",
]
