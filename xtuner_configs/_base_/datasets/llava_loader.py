# The data loader of the real recipes, reading one LLaVA-format dataset (llava_dataset.py); a recipe adds batch_size
# (derived from the config's setting), the dataset's data and the sampler. llava_box_mixture.py puts a mixture of box
# datasets into the same loader.
from mmengine.config import read_base

from mg_llava.dataset import llava_box_collate_fn

with read_base():
    from .llava_dataset import *

data_root = "./data/"
dataloader_num_workers = 4

train_dataloader = dict(
    num_workers=dataloader_num_workers,
    pin_memory=True,
    persistent_workers=True,
    dataset=llava_dataset,
    collate_fn=dict(type=llava_box_collate_fn),
)
del llava_dataset  # now the loader's
