# One LLaVA-format dataset of LLaVA's model part: the tokenizer, chat template, image views and text length. A config
# adds data_path and image_folder (and no boxes: box_file=None, allow_missing_boxes=True, for a model without object
# tokens); llava_box_dataset.py adds MG-LLaVA's box settings, llava_loader.py puts it into a data loader.
from mmengine.config import read_base
from xtuner.dataset.map_fns import llava_map_fn, template_map_fn_factory

from mg_llava.dataset import LLaVABoxDataset

with read_base():
    from ..models.llava_vicuna_7b import *

context_length = 2048  # LLM tokens a sample takes before its box tokens: the text and the low-res grid
max_length = context_length - (low_res // patch_size) ** 2  # text tokens (1472: 2048 - 576); boxes come on top
# The loader hands over decoded images; the model's data preprocessor pads and resizes them on the GPU (the resize was
# most of the loader's CPU time). False: the loader resizes with Pillow (the tiny CPU configs, where the CPU is the
# device and Pillow is faster). The views are the same bit for bit either way.
resize_on_device = True

llava_dataset = dict(
    type=LLaVABoxDataset,
    tokenizer=tokenizer,
    image_views=image_views,
    dataset_map_fn=llava_map_fn,
    template_map_fn=dict(type=template_map_fn_factory, template=prompt_template),
    max_length=max_length,
    resize_on_device=resize_on_device,
    # Bad data stops the run, naming every bad sample: a missing image or box entry usually means an incomplete
    # download or a wrong folder, better fixed before hours of GPU time than trained around. 'skip' leaves them out
    # (or serves the next sample) and lists each one in <work_dir>/skipped_samples.jsonl (mg_llava.engine.
    # BadSamplesHook): --cfg-options train_dataloader.dataset.on_bad_sample=skip
    on_bad_sample="raise",
)
