"""No quiet skips: the run's last lines name what was skipped, why and what to install (tests/conftest.py's hook),
also under pytest-xdist as the Makefile runs it; and no test skips for a Python package that `make setup` installs."""
import os
import os.path as osp
import re
import subprocess
import sys

TESTS = osp.dirname(osp.abspath(__file__))

SKIPPING = '''
import pytest

def test_runs():
    assert True

@pytest.fixture(scope="module")
def browser():
    pytest.skip("no headless browser (Debian package): apt-get install chromium chromium-driver")

def test_page_a(browser):
    pass

def test_page_b(browser):
    pass

@pytest.mark.skipif(True, reason="needs root: a local slurm cluster runs as root")
def test_cluster():
    pass
'''


def run_pytest(folder, *args):
    """pytest on ``folder`` with tests/conftest.py loaded as a plugin (the folder is outside tests/)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-q", "-p", "no:cacheprovider",
                          str(folder), *args], capture_output=True, text=True, env=env, cwd=str(folder), timeout=120)
    return out.stdout


def summary_line(stdout):
    lines = [line for line in stdout.splitlines() if line.startswith("skip summary:")]
    assert len(lines) == 1, stdout
    return lines[0]


def test_skips_are_summed_up_with_reason_and_install_hint_under_xdist(tmp_path):
    (tmp_path / "test_some.py").write_text(SKIPPING)
    (tmp_path / "test_other.py").write_text("def test_plain():\n    assert 1 + 1 == 2\n")
    line = summary_line(run_pytest(tmp_path, "-n", "2", "--dist", "loadfile"))
    assert line == ("skip summary: 3 skipped: 2 x no headless browser (Debian package): apt-get install chromium "
                    "chromium-driver; 1 x needs root: a local slurm cluster runs as root")


def test_a_run_without_skips_says_so(tmp_path):
    (tmp_path / "test_other.py").write_text("def test_plain():\n    assert 1 + 1 == 2\n")
    assert summary_line(run_pytest(tmp_path, "-p", "no:xdist")) == "skip summary: nothing skipped"


def test_no_test_skips_for_a_python_package_the_setup_installs():
    """importorskip or a find_spec-guarded skip would turn a broken `make setup` into a green run."""
    offenders = []
    for folder, _, names in os.walk(TESTS):
        for name in names:
            if name.endswith(".py") and name != osp.basename(__file__):
                with open(osp.join(folder, name)) as f:
                    text = f.read()
                if re.search(r"importorskip\(|find_spec\([^)]*\)\s*is None", text):
                    offenders.append(osp.relpath(osp.join(folder, name), TESTS))
    assert offenders == []
