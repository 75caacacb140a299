# LLaVA-1.5's architecture, the part MG-LLaVA builds on: CLIP ViT-L/14-336 (one view, 336 px), the 2-layer MLP
# projector, Vicuna-7B v1.5 in bf16; no high-res branch, no object tokens (a fusion, e.g. MMFuser, may sit on CLIP's
# layers). Stage 1's form: the LLM is frozen. models/mg_llava_vicuna_7b.py adds MG-LLaVA's parts; a config changes the
# settings of PART 1 and its derive_settings(globals()) writes them into the dicts of PART 2 (xtuner_configs/README.md).
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, CLIPImageProcessor

from mg_llava.dataset import PROMPT_TEMPLATE, ImageViews
from mg_llava.model import CLIPVisionEncoder, MGLLaVAModel, NoFusion, ViewsDataPreprocessor

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
low_res = 336
high_res = low_res  # one view: the padded square resized to 336 once
patch_size = 14  # CLIP's: the low-res view is a (low_res // patch_size) ** 2 token grid
# The CLIP processor's normalisation (OpenAI CLIP), for the processor and the model's data preprocessor, which
# normalises the loader's uint8 views on the device: one setting, so both always agree.
image_mean = (0.48145466, 0.4578275, 0.40821073)
image_std = (0.26862954, 0.26130258, 0.27577711)
fusion_type = NoFusion  # CLIP's tokens as they are
object_tokens = False

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
    visual_encoder_aux=None,
    fusion=dict(type=fusion_type),
    object_features=None,
    # normalises the views and makes the low-res one on the device; with the dataset's resize_on_device it first
    # pads and resizes the decoded images (as Pillow does, bit for bit)
    data_preprocessor=dict(type=ViewsDataPreprocessor, mean=image_mean, std=image_std, low_res=low_res,
                           high_res=high_res),
)
