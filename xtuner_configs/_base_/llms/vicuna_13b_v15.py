# Vicuna-13B v1.5 and its chat template. A config that imports this after a recipe points the recipe's
# tokenizer, LLM and datasets at these two settings (see xtuner_configs/README.md).
from mg_llava.dataset import PROMPT_TEMPLATE

llm_name_or_path = "lmsys/vicuna-13b-v1.5"
prompt_template = PROMPT_TEMPLATE.vicuna
