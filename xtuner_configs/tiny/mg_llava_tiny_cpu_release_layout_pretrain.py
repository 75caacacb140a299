# MG-LLaVA stage 1 on the tiny CPU default, reading the data in the release's layout: the one line below (after the
# recipe's import) is what switches any stage-1 config to it. Run from a folder whose ./data/ holds the release's
# tree (data_prep/README.md; tests/training/test_release_layout.py builds a small replica there):
#   xtuner train xtuner_configs/tiny/mg_llava_tiny_cpu_release_layout_pretrain.py
from mmengine.config import read_base

with read_base():
    from .mg_llava_tiny_cpu_pretrain import *
    from .._base_.datasets.released_pretrain import *  # one training JSON + one box JSON, image_folder ./data/
    from .._base_.derive import derive_settings

derive_settings(globals())  # every part that holds a setting above
