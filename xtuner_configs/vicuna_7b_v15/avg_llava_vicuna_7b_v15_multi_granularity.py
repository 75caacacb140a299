# AVG-LLaVA stage 3 (multi-granularity instruction tuning) on tiled (any-resolution) images, MG-LLaVA Vicuna-7B v1.5
# (AVG-LLaVA's own input; the untiled variant is avg_llava_vicuna_7b_v15_untiled_multi_granularity.py): each image is
# its global view plus 336 px crops of the best of LLaVA-NeXT's canvases (336x672, 672x336, 672x672, 1008x336,
# 336x1008). Every 24x24 grid (global and crops) is pooled with the same window per granularity; the crop grid is
# unpadded and each row ends with the learned image_newline (trained with the projectors). A 672x672 image at 576 grid
# tokens brings 576 + 48 x 49 = 2928 visual tokens plus its boxes, so the text is cut at 1024 tokens and the LLM's
# context is 4096. Otherwise avg_llava_vicuna_7b_v15_untiled_multi_granularity.py.
#   xtuner train xtuner_configs/vicuna_7b_v15/avg_llava_vicuna_7b_v15_multi_granularity.py
from mmengine.config import read_base

with read_base():
    from .avg_llava_vicuna_7b_v15_untiled_multi_granularity import *
    from .._base_.models.anyres import *
    from .._base_.derive import derive_settings

# 1024 text tokens and the global grid's 576; the crops' up to 2352 grid and the 100 box tokens come on top (Vicuna-7B
# v1.5: 4096)
context_length = 1024 + 576
image_views.update(anyres_views)
model.update(anyres_model)
del anyres_views, anyres_model

derive_settings(globals())  # every part that holds a setting above
