import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "list_configs.py"), *args], capture_output=True,
                          text=True, cwd=ROOT)


def test_lists_every_shipped_config():
    out = _run()
    assert out.returncode == 0
    listed = set(out.stdout.split())
    shipped = {str(p.relative_to(ROOT)) for p in (ROOT / "xtuner_configs").rglob("*.py")}
    assert listed == shipped and len(shipped) >= 12


def test_filters_by_pattern_and_fails_on_no_match():
    out = _run("-p", "YI_1_5")
    assert out.stdout.split() == ["xtuner_configs/yi_1_5_34b/mg_llava_yi_1_5_34b_finetune.py",
                                  "xtuner_configs/yi_1_5_34b/mg_llava_yi_1_5_34b_pretrain.py"]
    missing = _run("-p", "no-such-backbone")
    assert missing.returncode == 1 and "no config matches" in missing.stderr
