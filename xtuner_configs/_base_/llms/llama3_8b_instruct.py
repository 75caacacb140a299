# Llama-3-8B-Instruct and its chat template. A config that imports this after a recipe points the recipe's
# tokenizer, LLM and datasets at these two settings (see xtuner_configs/README.md).
from mg_llava.dataset import PROMPT_TEMPLATE

llm_name_or_path = "meta-llama/Meta-Llama-3-8B-Instruct"
prompt_template = PROMPT_TEMPLATE.llama3_chat
