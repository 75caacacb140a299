# The rules that make a config's parts from its settings (mg_llava/config_settings.py). Every config sets settings
# (top-level variables) only, imports this part and ends with `derive_settings(globals())`, which writes each setting
# into every dict that holds it: the tokenizer, the LLM, the image processor and views, the data preprocessor, the
# datasets (max_length = context_length - the low-res grid's tokens), the batch layout, the optimizer, the schedule
# and the hooks.


def derive_settings(cfg):
    """Write the settings of ``cfg`` (the config's ``globals()``) into every part that holds them."""
    __import__("mg_llava.config_settings", fromlist=["derive_settings"]).derive_settings(cfg)
    cfg.pop("derive_settings", None)  # a helper, not a setting (and mmengine cannot write a function out)
