"""Prompt templates: XTuner's, plus ChatML for Yi-1.5.

XTuner 0.2.0 has no ChatML entry under that name (the released MG-LLaVA config borrowed ``qwen_chat``, whose stop
words include Qwen's ``<|endoftext|>``). ``chatml`` is the format Yi-1.5-Chat was tuned on::

    <|im_start|>system\\n{system}<|im_end|>\\n
    <|im_start|>user\\n{input}<|im_end|>\\n<|im_start|>assistant\\n{output}<|im_end|>\\n

``<|im_end|>`` closes every answer and is trained (``SUFFIX_AS_EOS``); the newline after it is not (``SEP``).
Use a template through XTuner: ``template_map_fn=dict(type=template_map_fn_factory, template=PROMPT_TEMPLATE.chatml)``.
"""
from mmengine.config import ConfigDict
from xtuner.utils import PROMPT_TEMPLATE as XTUNER_PROMPT_TEMPLATE

CHATML_TEMPLATE = ConfigDict(
    SYSTEM="<|im_start|>system\n{system}<|im_end|>\n",
    INSTRUCTION="<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n",
    SUFFIX="<|im_end|>",
    SUFFIX_AS_EOS=True,
    SEP="\n",
    STOP_WORDS=["<|im_end|>"],
)

PROMPT_TEMPLATE = ConfigDict(**XTUNER_PROMPT_TEMPLATE, chatml=CHATML_TEMPLATE)
