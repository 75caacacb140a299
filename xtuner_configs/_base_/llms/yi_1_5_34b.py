# Yi-1.5-34B and its chat template (ChatML). A config that imports this after a recipe points the recipe's
# tokenizer, LLM and datasets at these two settings (see xtuner_configs/README.md).
from mg_llava.dataset import PROMPT_TEMPLATE

llm_name_or_path = "01-ai/Yi-1.5-34B"
prompt_template = PROMPT_TEMPLATE.chatml
