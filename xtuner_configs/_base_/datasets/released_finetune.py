# Stage 2's data in the MG-LLaVA release's layout (data_prep/README.md): one LLaVA-format training JSON holding all
# 1.38M conversations (LLaVA-665K, ALLaVA-Instruct LAION and Vision-FLAN 692K, and 25K of ShareGPT4V, DocVQA, DVQA
# and AI2D), one box JSON for them, and the images under data/ (coco/train2017, gqa/images, ocr_vqa/images,
# textvqa/train_images, vg/VG_100K(_2), allava_laion, allava_vflan, share_textvqa, web-celebrity, web-landmark,
# wikiart, ai2d, docvqa, dvqa), as the JSON's relative paths name them. A stage-2 config trains on it with one import
# after its recipe's:
#     from .._base_.datasets.released_finetune import *
# derive_settings then puts this dataset in the loader in place of the recipe's sources, with the settings they share
# (tokenizer, template, views, text length, box rules, box cache, on_bad_sample); the recipe's length-grouped sampler
# stays. Another file or folder is a field of released_dataset (--cfg-options released_dataset.data_path=...).
from mmengine.config import read_base

from mg_llava.dataset import LLaVABoxDataset

with read_base():
    from .llava_loader import data_root

released_dataset = dict(
    type=LLaVABoxDataset,
    # train_json/ in the authors' model repository (PhoenixZ/MG-LLaVA); the name is assumed to be the box file's
    # without "_only_box" (data_prep/README.md)
    data_path=data_root + "train_json/instruct_llava_allava_doc_dvqa_share_ai2d_1383k.json",
    box_file=data_root + "bbox_json/train/instruct_llava_allava_doc_dvqa_share_ai2d_1383k_only_box.json",  # published
    image_folder=data_root,
    # the text pre-tokenised by xtuner/tools/process_untokenized_llava_data.py (data_prep/README.md): then data_path
    # is not read
    offline_processed_text_folder=None,
)
