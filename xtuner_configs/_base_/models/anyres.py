# Any-resolution tiling (LLaVA-NeXT's, the input AVG-LLaVA is built on): each image gets its global view (MG-LLaVA's
# padded square) plus 336 px crops of the best-fitting canvas among the pinpoints; the crops go through CLIP and the
# projector, their token grid is unpadded and each of its rows ends with a learned image_newline token. The high-res
# branch, the fusion and the object tokens see the whole padded square as without tiling. A config puts
# anyres_views into its image views (every dict holding them) and anyres_model into its model.
from mg_llava.dataset import AnyResImageViews
from mg_llava.model import AnyResTokens

grid_pinpoints = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]  # (width, height) canvases
image_newline = True  # LLaVA-NeXT's learned row-end token after each row of the crop grid
anyres_views = dict(type=AnyResImageViews, grid_pinpoints=grid_pinpoints)
anyres_model = dict(anyres=dict(type=AnyResTokens, image_newline=image_newline))
