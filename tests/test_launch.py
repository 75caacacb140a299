"""mg_llava/launch.py: tools start `xtuner train` in the environment of the interpreter that runs them."""
import os
import os.path as osp
import shutil
import subprocess
import sys

from mg_llava.launch import interpreter_env


def test_the_interpreters_folder_comes_first_once():
    folder = osp.dirname(sys.executable)
    env = interpreter_env({"PATH": os.pathsep.join(["/usr/bin", folder, "/bin"]), "OTHER": "1"})
    assert env["PATH"].split(os.pathsep) == [folder, "/usr/bin", "/bin"] and env["OTHER"] == "1"


def test_xtuner_is_found_without_an_activated_environment():
    """With PATH as a shell without the virtual environment has it, the tools' `xtuner` is this environment's."""
    bare = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    env = interpreter_env(bare)
    xtuner = shutil.which("xtuner", path=env["PATH"])
    assert xtuner is not None and osp.dirname(xtuner) == osp.dirname(sys.executable)
    # and what `xtuner train` re-launches, `python`, is this interpreter's environment too
    out = subprocess.run(["python", "-c", "import sys; print(sys.prefix)"], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == sys.prefix
