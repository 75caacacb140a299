import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_list_configs():
    spec = importlib.util.spec_from_file_location("tool_list_configs", ROOT / "tools" / "list_configs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "list_configs.py"), *args], capture_output=True,
                          text=True, cwd=ROOT)


def test_lists_every_shipped_config():
    out = _run()
    assert out.returncode == 0
    listed = set(out.stdout.split())
    shipped = {str(p.relative_to(ROOT)) for p in (ROOT / "xtuner_configs").rglob("*.py") if "_base_" not in p.parts}
    assert listed == shipped and len(shipped) >= 12


def test_filters_by_pattern_and_fails_on_no_match():
    out = _run("-p", "YI_1_5")
    assert out.stdout.split() == ["xtuner_configs/yi_1_5_34b/mg_llava_yi_1_5_34b_finetune.py",
                                  "xtuner_configs/yi_1_5_34b/mg_llava_yi_1_5_34b_pretrain.py"]
    missing = _run("-p", "no-such-backbone")
    assert missing.returncode == 1 and "no config matches" in missing.stderr


def test_dump_prints_one_flat_config(capsys):
    tool = load_list_configs()
    tool.main(["--dump", "yi_1_5_34b_pretrain"])
    out = capsys.readouterr().out
    assert "read_base" not in out and "_base_" not in out
    assert "llm_name_or_path = '01-ai/Yi-1.5-34B'" in out
    assert "zero_optimization=dict(\n            stage=3," in out
    with pytest.raises(SystemExit):
        tool.main(["--dump", "yi_1_5_34b"])
    assert "matches 2 configs" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "xtuner_configs").rglob("mg_llava_*.py")
                                        if "_base_" not in p.parts))
def test_flat_dump_parses_to_the_same_config(name, tmp_path):
    """The dump of every shipped config, saved elsewhere, parses to exactly the original's values."""
    from mmengine.config import Config

    path = next((ROOT / "xtuner_configs").rglob(name))
    flat = tmp_path / name
    flat.write_text(load_list_configs().dump_config(str(path)))
    original, dumped = Config.fromfile(str(path)), Config.fromfile(str(flat))
    assert dumped.to_dict() == original.to_dict()
    assert list(dumped.to_dict()) == list(original.to_dict())  # same variables, in the same order
