# The data loader of the real recipes: a mixture of LLaVA-format box datasets that share one dataset's settings
# (llava_box_dataset.py) and a cache of the parsed box files. A stage's recipe lists the sources (data, images, boxes).
from mmengine.config import read_base

from mg_llava.dataset import ConcatLLaVABoxDataset, llava_box_collate_fn

with read_base():
    from .llava_box_dataset import *

data_root = "./data/"
box_cache_dir = data_root + "boxes/cache"  # parsed box files as memory-mapped arrays, shared by every rank
dataloader_num_workers = 4

train_dataloader = dict(  # a recipe adds batch_size, the mixture's sources (dataset.datasets) and the sampler
    num_workers=dataloader_num_workers,
    pin_memory=True,
    persistent_workers=True,
    dataset=dict(llava_dataset, type=ConcatLLaVABoxDataset, box_cache_dir=box_cache_dir),  # shared by the sources
    collate_fn=dict(type=llava_box_collate_fn),
)
del llava_dataset  # now the mixture's
