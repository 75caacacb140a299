import torch.nn as nn
from xtuner.registry import BUILDER

import mg_llava  # noqa: F401  (registers the package)
from mg_llava.registry import MODELS, build


@MODELS.register_module()
class _RegistryProbe(nn.Module):
    def __init__(self, width=3):
        super().__init__()
        self.width = width


def test_build_by_string_type():
    module = MODELS.build(dict(type="_RegistryProbe", width=5))
    assert isinstance(module, _RegistryProbe) and module.width == 5


def test_build_by_class_object():
    module = MODELS.build(dict(type=_RegistryProbe, width=7))
    assert isinstance(module, _RegistryProbe) and module.width == 7


def test_xtuner_builder_resolves_scoped_string():
    module = BUILDER.build(dict(type="mg_llava._RegistryProbe", width=2))
    assert isinstance(module, _RegistryProbe) and module.width == 2


def test_build_passes_built_objects_through():
    module = _RegistryProbe()
    assert build(module) is module
    assert build(dict(type="_RegistryProbe")).width == 3
