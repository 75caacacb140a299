# Phi-3-mini-4k-instruct (3.8B) and its chat template. A config that imports this after a recipe points the recipe's
# tokenizer, LLM and datasets at these two settings (see xtuner_configs/README.md).
from mg_llava.dataset import PROMPT_TEMPLATE

llm_name_or_path = "microsoft/Phi-3-mini-4k-instruct"
prompt_template = PROMPT_TEMPLATE.phi3_chat
