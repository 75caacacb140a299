# MG-LLaVA's released architecture: CLIP ViT-L/14-336 (low-res) + open_clip ConvNeXt-L (768 px, high-res), Conv-Gate
# fusion, one RoIAlign token per object box, Vicuna-7B v1.5 in bf16. Stage 1's form: the LLM is frozen. Shared by every
# config; a config changes the settings of PART 1 (another LLM: llm_name_or_path and prompt_template) and its
# derive_settings(globals()) writes them into the dicts of PART 2 (see xtuner_configs/README.md).
from mmengine.config import read_base

with read_base():
    from .llava_vicuna_7b import *  # the LLM, CLIP, views and the model they make
    # PART 1 Settings: MG-LLaVA's (high-res encoder and view, fusion, object tokens, boxes) and its ablation switches
    from .mg_llava_branches import *

#######################################################################
#            PART 2  Model & Tokenizer & Image Processor              #
#######################################################################
# LLaVA's model with MG-LLaVA's high-res branch, fusion and object tokens (the views' and preprocessor's high_res
# follow the setting through derive_settings)
model.update(mg_llava_branches)
del mg_llava_branches  # now the model's
