# Stage 2 of the paper's ablations (Table 5, Section 4.3): MG-LLaVA's stage-2 recipe (mg_llava_finetune.py) on
# LLaVA-1.5's data only, the LLaVA-665K mix with its boxes, at the runtime's fixed seed (42). A config of
# xtuner_configs/vicuna_7b_v15/table5/ points pretrained_pth at its own stage 1.
from mmengine.config import read_base

from mg_llava.dataset import LLaVABoxDataset

with read_base():
    from .mg_llava_finetune import *

train_dataloader.dataset.datasets = [
    dict(  # LLaVA-665K
        type=LLaVABoxDataset,
        data_path=llava_mix_data_path,
        image_folder=llava_mix_image_folder,
        box_file=llava_mix_box_file,
    ),
]
