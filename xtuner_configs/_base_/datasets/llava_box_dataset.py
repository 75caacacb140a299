# One LLaVA-format box dataset of MG-LLaVA's model part: llava_dataset.py's settings plus the box limit and rule
# (max_boxes, box_rule: models/mg_llava_branches.py's settings). A config adds data_path, image_folder and box_file (the
# tiny CPU configs), or hands these settings to every source of a mixture (llava_box_mixture.py).
from mmengine.config import read_base

with read_base():
    from .llava_dataset import *
    from ..models.mg_llava_vicuna_7b import *

llava_dataset.update(max_boxes=max_boxes, box_rule=box_rule)
