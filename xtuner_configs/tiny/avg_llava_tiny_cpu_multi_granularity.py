# AVG-LLaVA stage 3 on tiled (any-resolution) images, the AVG default as its authors train it; tiny CPU version: each
# image is its global view plus 56 px crops of the best of LLaVA-NeXT's five canvases scaled to the tiny crop side
# (56x112, 112x56, 112x112, 168x56, 56x168); the scaler pools the global grid and every crop's grid alike, the crop grid
# is unpadded and its rows end with the learned image_newline. Otherwise
# avg_llava_tiny_cpu_untiled_multi_granularity.py.
#   xtuner train xtuner_configs/tiny/avg_llava_tiny_cpu_multi_granularity.py
from mmengine.config import read_base

with read_base():
    from .avg_llava_tiny_cpu_untiled_multi_granularity import *
    from .._base_.models.anyres import *
    from .._base_.derive import derive_settings

grid_pinpoints = [[w * low_res // 336, h * low_res // 336] for w, h in grid_pinpoints]
anyres_views.update(grid_pinpoints=grid_pinpoints)
image_views.update(anyres_views)
model.update(anyres_model)
del anyres_views, anyres_model

derive_settings(globals())  # every part that holds a setting above
