# Stage 1's data in the MG-LLaVA release's layout (data_prep/README.md): one LLaVA-format training JSON holding all
# 1.26M captions (LLaVA-Pretrain 558K + ALLaVA-Caption LAION and Vision-FLAN 708K), one box JSON for them, and the
# images under data/ (LLaVA-Pretrain/images, allava_laion/images, allava_vflan/images), as the JSON's relative paths
# name them. A stage-1 config trains on it with one import after its recipe's:
#     from .._base_.datasets.released_pretrain import *
# derive_settings then puts this dataset in the loader in place of the recipe's sources, with the settings they share
# (tokenizer, template, views, text length, box rules, box cache, on_bad_sample). Another file or folder is a field
# of released_dataset (also on the command line: --cfg-options released_dataset.data_path=...).
from mmengine.config import read_base

from mg_llava.dataset import LLaVABoxDataset

with read_base():
    from .llava_loader import data_root

released_dataset = dict(
    type=LLaVABoxDataset,
    # train_json/ in the authors' model repository (PhoenixZ/MG-LLaVA); the name is assumed to be the box file's
    # without "_only_box" (data_prep/README.md)
    data_path=data_root + "train_json/pretrain_blip_allava_1266k.json",
    box_file=data_root + "bbox_json/train/pretrain_blip_allava_1266k_only_box.json",  # as published
    image_folder=data_root,
    # the text pre-tokenised by xtuner/tools/process_untokenized_llava_data.py (data_prep/README.md): then data_path
    # is not read
    offline_processed_text_folder=None,
)
