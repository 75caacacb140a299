# The data loader of the real MG-LLaVA recipes: a mixture of LLaVA-format box datasets that share one dataset's
# settings (llava_box_dataset.py) and a cache of the parsed box files, in llava_loader.py's loader. A stage's recipe
# lists the sources (data, images, boxes).
from mmengine.config import read_base

from mg_llava.dataset import ConcatLLaVABoxDataset

with read_base():
    from .llava_box_dataset import *
    from .llava_loader import data_root, dataloader_num_workers, train_dataloader

box_cache_dir = data_root + "boxes/cache"  # parsed box files as memory-mapped arrays, shared by every rank
train_dataloader.dataset = dict(llava_dataset, type=ConcatLLaVABoxDataset, box_cache_dir=box_cache_dir)  # shared
del llava_dataset  # now the mixture's
