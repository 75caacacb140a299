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


def test_lower_layers_never_import_the_inference_layer():
    """The model, data and box-generation code do not import mg_llava.inference (which imports them);
    MGLLaVAModel.to_hf reaches the export through the registry, which finds it on first use."""
    import ast
    from pathlib import Path

    package = Path(mg_llava.__file__).parent
    for layer in ("model", "dataset", "boxgen"):
        for path in (package / layer).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom):
                    names = [("." * node.level) + (node.module or "")]
                assert not any("inference" in name for name in names), f"{path} imports {names}"
    from mg_llava.inference.export import export_for_xtuner
    from mg_llava.registry import WHOLE_MODEL_EXPORT

    assert MODELS.get(WHOLE_MODEL_EXPORT) is export_for_xtuner
