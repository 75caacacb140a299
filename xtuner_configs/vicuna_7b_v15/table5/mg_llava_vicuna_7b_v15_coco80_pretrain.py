# MG-LLaVA ablation, stage 1 (pretrain), Vicuna-7B v1.5 on LLaVA-1.5's data (_base_/table5_pretrain.py).
# Table 5c, COCO-80 tags: boxes from OWLv2 given the 80 COCO names instead of RAM++ tags.
#   xtuner train xtuner_configs/vicuna_7b_v15/table5/mg_llava_vicuna_7b_v15_coco80_pretrain.py
# Its boxes first (data_prep/README.md; OWLv2 on a GPU):
#   python data_prep/generate_boxes.py --data ./data/LLaVA-Pretrain/blip_laion_cc_sbu_558k.json \
#       --image-folder ./data/LLaVA-Pretrain/images \
#       --out-dir ./data/boxes_coco80/blip_laion_cc_sbu_558k --tagger coco80
from mmengine.config import read_base

with read_base():
    from ..._base_.table5_pretrain import *
    from ..._base_.derive import derive_settings

train_dataloader.dataset.datasets[0].box_file = data_root + "boxes_coco80/blip_laion_cc_sbu_558k/boxes.json"

derive_settings(globals())  # every part that holds a setting above
