# One LLaVA-format box dataset: the tokenizer, chat template, image views and limits of the model part. A config adds
# data_path, image_folder and box_file (the tiny CPU configs), or hands these settings to every source of a mixture
# (llava_box_mixture.py).
from mmengine.config import read_base
from xtuner.dataset.map_fns import llava_map_fn, template_map_fn_factory

from mg_llava.dataset import LLaVABoxDataset

with read_base():
    from ..models.mg_llava_vicuna_7b import *

max_length = int(2048 - (336 / 14) ** 2)  # text tokens; the 576 image and the box tokens come on top
max_boxes = 100
box_rule = "clean"  # "released": the released checkpoints' box handling, to fine-tune them on what they saw

llava_dataset = dict(
    type=LLaVABoxDataset,
    tokenizer=tokenizer,
    image_views=image_views,
    dataset_map_fn=llava_map_fn,
    template_map_fn=dict(type=template_map_fn_factory, template=prompt_template),
    max_length=max_length,
    max_boxes=max_boxes,
    box_rule=box_rule,
)
