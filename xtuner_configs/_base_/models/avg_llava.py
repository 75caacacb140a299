# AVG-LLaVA on MG-LLaVA: the granularity scaler (the grid averaged over 1x1 .. 4x4 windows: 576, 288, 144, 72, 36
# tokens at 336 px) and the router, with RGLF's loss weights. A config puts avg_llava_model into its MG-LLaVA model
# (model.update(avg_llava_model, stage=...)).
from mg_llava.model import AVGLLaVAModel, VisualGranularityRouter, VisualGranularityScaler

granularity_pools = ((1, 1), (1, 2), (2, 2), (2, 4), (4, 4))  # (rows, cols) averaged
router_instruction_tokens = 32  # instruction tokens the router reads (most similar to the image)
router_views = "all"  # tiled images: the router averages over the global view and every crop ("global": global only)
rglf_ce_weight = 0.1
rglf_margin = 1.0
# the authors' ranking loss: margin x rank distance x loss gap, hinge averaged per distance and summed over distances
# ("pairwise_mean": the mean over all pairs with margin x loss gap, this project's earlier reading)
rglf_rank_loss = "rank_distance"
avg_llava_model = dict(
    type=AVGLLaVAModel,
    scaler=dict(type=VisualGranularityScaler, pools=granularity_pools),
    router=dict(type=VisualGranularityRouter, num_instruction_tokens=router_instruction_tokens, num_heads=8,
                views=router_views),
    rglf_ce_weight=rglf_ce_weight,
    rglf_margin=rglf_margin,
    rglf_rank_loss=rglf_rank_loss,
)
