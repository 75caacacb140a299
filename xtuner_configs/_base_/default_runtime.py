# Hooks, environment and logging shared by every recipe.
from mmengine.hooks import CheckpointHook, DistSamplerSeedHook, IterTimerHook, LoggerHook, ParamSchedulerHook

from mg_llava.engine import BadSamplesHook, SampleAnswersHook

save_steps = 500
save_total_limit = 2  # -1 keeps all

default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=LoggerHook, log_metric_by_epoch=False, interval=10),
    param_scheduler=dict(type=ParamSchedulerHook),
    checkpoint=dict(type=CheckpointHook, by_epoch=False, interval=save_steps, max_keep_ckpts=save_total_limit),
    sampler_seed=dict(type=DistSamplerSeedHook),
)

# Sample answers during training: the model answers these before training, every evaluation_freq iterations and at
# the end (in the log), through the training data's tokenizer, views, template and box rules (box_rule included; read
# by mg_llava.dataset.DataSettings.from_config); before training it also runs XTuner's DatasetInfoHook with that
# tokenizer (the sample count and the first sample decoded). chelsea.jpg is shipped in mg_llava/engine/samples/; its boxes
# are hand-drawn, in the box-file format (original pixels).
evaluation_freq = 500
evaluation_samples = [
    dict(
        image="chelsea.jpg",
        question="What is the main object in the image?",
        boxes=dict(boxes=[[40, 0, 451, 300], [90, 10, 330, 250]], scores=[0.9, 0.9], labels=["cat", "cat head"]),
    ),
    dict(image="chelsea.jpg", question="Please describe this picture.", boxes=None),
]
# Every sample the datasets leave out or replace (on_bad_sample='skip') is listed in <work_dir>/skipped_samples.jsonl
# at the start, at each checkpoint and at the end, and counted in the log's last lines.
custom_hooks = [
    dict(type=SampleAnswersHook, samples=evaluation_samples, every_n_iters=evaluation_freq, max_new_tokens=64),
    dict(type=BadSamplesHook),
]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="nccl"),
)

visualizer = None
log_level = "INFO"
load_from = None
resume = False
randomness = dict(seed=42, deterministic=False)
log_processor = dict(by_epoch=False)
