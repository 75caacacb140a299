"""The package's import graph: every module imports on its own, and no import circle, hidden in a function or not.

The graph has an edge ``A -> B`` for every module ``B`` that an import statement anywhere in ``A`` names (at the top
or inside a function: a function-level import only delays a circle to the first call), and for the packages above
``B`` (their ``__init__`` runs first). ``from P import name`` names ``P`` and, when ``name`` is a sub-module,
``P.name``. Packages that contain ``A`` are left out: Python has already started them when ``A`` runs, so importing
from them re-runs nothing.
"""
import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Set

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mg_llava"


def module_files(package_dir: Path) -> Dict[str, Path]:
    """{dotted module name: file} of every module of the package at ``package_dir`` (packages by ``__init__``)."""
    root = package_dir.parent
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if "__pycache__" in parts:
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _resolve(importer: str, is_package: bool, module: str, level: int) -> str:
    """The absolute name of ``from <level dots><module> import ...`` written in ``importer``."""
    if level == 0:
        return module
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def import_graph(package_dir: Path) -> Dict[str, Set[str]]:
    """{module: modules of the package it imports} from every import statement of every module (see the module
    docstring for what counts as an edge)."""
    modules = module_files(package_dir)
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        named = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                named.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(name, is_package, node.module or "", node.level)
                named.add(target)
                named.update(f"{target}.{alias.name}" for alias in node.names)
        named |= {".".join(m.split(".")[:i]) for m in named for i in range(1, m.count(".") + 1)}  # packages above
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1 + is_package)}
        graph[name] = {m for m in named if m in modules and m != name and m not in ancestors}
    return graph


def import_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The import circles of ``graph``: its strongly connected components of more than one module, each sorted
    (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        cycles.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return sorted(cycles)


def test_the_package_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    assert len(graph) > 50 and "mg_llava.inference.video_qa" in graph["mg_llava.inference.benchmarks"]
    assert import_cycles(graph) == []


def _write_package(root: Path, files: Dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root / "pkg"


def test_the_checker_finds_planted_cycles(tmp_path):
    """A circle hidden in a function (the old benchmarks <-> video_qa kind), one through a package's ``__init__``
    and one by absolute names are found; imports of the enclosing package and a one-way chain are not circles."""
    package = _write_package(tmp_path, {
        "__init__.py": "from . import chain_a\n",
        "chain_a.py": "from .chain_b import x\n",
        "chain_b.py": "import pkg\nfrom pkg import chain_c\nx = 1\n",
        "chain_c.py": "",
        "readers/__init__.py": "",
        "readers/bench.py": "from .video import read\n",
        "readers/video.py": "def read():\n    from .bench import Item  # hidden: runs on the first call only\n",
        "sub/__init__.py": "from .user import thing\n",
        "sub/user.py": "from ..helper import thing\n",
        "helper.py": "def thing():\n    from .sub import user\n",
        "abs_a.py": "import pkg.abs_b\n",
        "abs_b.py": "from pkg.abs_a import *\n",
    })
    graph = import_graph(package)
    assert graph["pkg.chain_b"] == {"pkg.chain_c"}  # 'import pkg' from inside pkg re-runs nothing
    assert import_cycles(graph) == [["pkg.abs_a", "pkg.abs_b"], ["pkg.helper", "pkg.sub", "pkg.sub.user"],
                                    ["pkg.readers.bench", "pkg.readers.video"]]


# Run by the test below in a fresh interpreter: argv = the package's modules.
ISOLATED_IMPORTS = """
import importlib, os, sys, traceback

names = sys.argv[1:]
ours = lambda module: module == "mg_llava" or module.startswith("mg_llava.")
# A throwaway child imports the whole package and reports the other modules it loaded, in load order.
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read_end)
    before = set(sys.modules)
    for name in names:
        try:
            importlib.import_module(name)
        except BaseException:
            pass  # the children below report it
    with os.fdopen(write_end, "w") as out:
        out.write("\\n".join(m for m in sys.modules if m not in before and not ours(m) and m != "__main__"))
    os._exit(0)
os.close(write_end)
with os.fdopen(read_end) as pipe:
    libraries = pipe.read().split()
os.waitpid(pid, 0)
for library in libraries:  # loaded once here, in the same order, and shared by every child
    try:
        importlib.import_module(library)
    except BaseException:
        pass  # the child that needs it imports it itself
assert not any(ours(m) for m in sys.modules), "the parent must not load the package"
failed = []
for name in names:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException:
            print(f"--- importing {name} first:", file=sys.stderr)
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    if os.waitpid(pid, 0)[1] != 0:
        failed.append(name)
print("FAILED:", " ".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_on_its_own():
    """Each module is the first of the package to be imported, in a process with no ``mg_llava`` module loaded
    (import order hides circles and missing imports). One process per module would spend ~10 s each re-importing
    torch, transformers, mmengine and XTuner; instead a parent loads those once, without the package, and forks
    one child per module."""
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    names = sorted(module_files(PACKAGE))
    env = dict(os.environ, PYTHONPATH=str(PACKAGE.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", ISOLATED_IMPORTS, *names], capture_output=True, text=True, env=env,
                          cwd=str(PACKAGE.parent), timeout=500)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-6000:]
    assert done.stdout.strip().endswith("FAILED:")
