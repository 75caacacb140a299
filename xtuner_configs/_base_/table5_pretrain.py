# Stage 1 of the paper's ablations (Table 5, Section 4.3): MG-LLaVA's stage-1 recipe (mg_llava_pretrain.py) on
# LLaVA-1.5's data only, LLaVA-Pretrain's 558K captions with their boxes, at the runtime's fixed seed (42). The
# configs of xtuner_configs/vicuna_7b_v15/table5/ change one switch of models/mg_llava_branches.py each.
from mmengine.config import read_base

from mg_llava.dataset import LLaVABoxDataset

with read_base():
    from .mg_llava_pretrain import *

train_dataloader.dataset.datasets = [
    dict(  # LLaVA-Pretrain
        type=LLaVABoxDataset,
        data_path=llava_pretrain_data_path,
        image_folder=llava_pretrain_image_folder,
        box_file=llava_pretrain_box_file,
    ),
]
