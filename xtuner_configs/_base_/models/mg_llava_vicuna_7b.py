# MG-LLaVA's released architecture: CLIP ViT-L/14-336 (low-res) + open_clip ConvNeXt-L (768 px, high-res), Conv-Gate
# fusion, one RoIAlign token per object box, Vicuna-7B v1.5 in bf16. Stage 1's form: the LLM is frozen. Shared by every
# config; a config changes the settings of PART 1 (another LLM: llm_name_or_path and prompt_template) and its
# derive_settings(globals()) writes them into the dicts of PART 2 (see xtuner_configs/README.md).
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, CLIPImageProcessor

from mg_llava.dataset import PROMPT_TEMPLATE, ImageViews
from mg_llava.model import (
    CLIPVisionEncoder,
    ConvGateFusion,
    MGLLaVAModel,
    MultiScaleRoIFeatures,
    OpenCLIPConvNeXtEncoder,
    ViewsDataPreprocessor,
)

# mmengine parses configs in lazy-import mode: the imports above load nothing until an object is built. Importing
# mg_llava now applies its compatibility patches (mg_llava/compat.py) before XTuner reads a --resume checkpoint and
# before torch.distributed starts.
__import__("mg_llava")

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
llm_name_or_path = "lmsys/vicuna-7b-v1.5"
prompt_template = PROMPT_TEMPLATE.vicuna
visual_encoder_name_or_path = "openai/clip-vit-large-patch14-336"
# open_clip ConvNeXt-L (LAION-2B ft-soup): the folder of open_clip_pytorch_model.bin from
# laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup ("local-dir:<folder>" also works as the model name)
visual_encoder_aux_name = "convnext_large_d_320"
visual_encoder_aux_pretrained = "./pretrained/convnext_large_d_320/open_clip_pytorch_model.bin"
high_res = 768
low_res = 336
patch_size = 14  # CLIP's: the low-res view is a (low_res // patch_size) ** 2 token grid
# The CLIP processor's normalisation (OpenAI CLIP), for the processor and the model's data preprocessor, which
# normalises the loader's uint8 views on the device: one setting, so both always agree.
image_mean = (0.48145466, 0.4578275, 0.40821073)
image_std = (0.26862954, 0.26130258, 0.27577711)
object_roi_size = 56  # RoIAlign output grid before averaging (the released weights were trained with 56)
# Ablation switches, one line each in a config:
#   fusion_type = ChannelConcatFusion     (or NoFusion: the low-res tokens only)
#   object_tokens = False                 (no object tokens; a stage-1 file's bbox_projector.* is then ignored with a
#                                          warning)
fusion_type = ConvGateFusion
object_tokens = True

#######################################################################
#            PART 2  Model & Tokenizer & Image Processor              #
#######################################################################
tokenizer = dict(
    type=AutoTokenizer.from_pretrained,
    pretrained_model_name_or_path=llm_name_or_path,
    trust_remote_code=False,
    padding_side="right",
)

image_processor = dict(
    type=CLIPImageProcessor.from_pretrained,
    pretrained_model_name_or_path=visual_encoder_name_or_path,
    image_mean=image_mean,
    image_std=image_std,
)

image_views = dict(type=ImageViews, image_processor=image_processor, high_res=high_res, low_res=low_res)

model = dict(
    type=MGLLaVAModel,
    freeze_llm=True,
    use_activation_checkpointing=False,
    llm=dict(
        type=AutoModelForCausalLM.from_pretrained,
        pretrained_model_name_or_path=llm_name_or_path,
        torch_dtype=torch.bfloat16,
    ),
    visual_encoder=dict(type=CLIPVisionEncoder, pretrained_model_name_or_path=visual_encoder_name_or_path),
    visual_encoder_aux=dict(
        type=OpenCLIPConvNeXtEncoder, model_name=visual_encoder_aux_name, pretrained=visual_encoder_aux_pretrained
    ),
    fusion=dict(type=fusion_type),
    object_features=dict(type=MultiScaleRoIFeatures, output_size=object_roi_size) if object_tokens else None,
    # normalises the views and makes the low-res one on the device; with the dataset's resize_on_device it first
    # pads and resizes the decoded images (as Pillow does, bit for bit)
    data_preprocessor=dict(type=ViewsDataPreprocessor, mean=image_mean, std=image_std, low_res=low_res,
                           high_res=high_res),
)
