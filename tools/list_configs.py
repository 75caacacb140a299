"""List this project's training configs (``xtuner list-cfg`` only knows XTuner's own), or print one of them flat.

    python tools/list_configs.py [-p PATTERN]
    python tools/list_configs.py --dump NAME [-o FILE]

Without --dump: one path per line, relative to the repository, for use with ``xtuner train``. The shared parts under
``xtuner_configs/_base_/`` are not configs of their own and are not listed.

--dump NAME (a path, or a pattern that matches one config): the config with its base parts resolved, written as one
self-contained XTuner config (imports, then every variable with its final value). It parses to the same values as
the original (tests/tools/test_list_configs.py checks every shipped config), so it can be read, saved, edited and
trained from anywhere.
"""
import argparse
import keyword
import os.path as osp
import sys
from glob import glob

CONFIG_ROOT = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), "xtuner_configs")
BASE_DIR = "_base_"
LINE_WIDTH = 120


def list_configs(pattern: str = "") -> list:
    paths = sorted(glob(osp.join(CONFIG_ROOT, "**", "*.py"), recursive=True))
    rel = [osp.relpath(p, osp.dirname(CONFIG_ROOT)) for p in paths]
    rel = [p for p in rel if BASE_DIR not in p.split(osp.sep)]
    return [p for p in rel if pattern.lower() in p.lower()]


class _Imports:
    """The import lines a flat config needs, and the name each lazily imported object goes by."""

    def __init__(self):
        self.names = {}  # module ("" for plain imports) -> {"name" or "name as alias"}
        self.owner = {}  # bound name -> the module it comes from

    def bind(self, module: str, name: str, alias: str) -> str:
        while self.owner.get(alias, module) != module:
            alias += "_"
        self.owner[alias] = module
        self.names.setdefault(module, set()).add(name if alias == name else f"{name} as {alias}")
        return alias

    @property
    def lines(self) -> list:
        plain = [f"import {name}" for name in sorted(self.names.get("", ()))]
        return plain + [f"from {module} import {', '.join(sorted(names))}"
                        for module, names in sorted(self.names.items()) if module]

    def expression(self, obj) -> str:
        from mmengine.config.lazy import LazyAttr, LazyObject

        if isinstance(obj, LazyAttr):
            return f"{self.expression(obj.source)}.{obj.name}"
        if isinstance(obj, LazyObject):
            if obj._imported is not None:  # from module import name
                return self.bind(obj._module, obj._imported, obj._imported)
            top = obj.module  # import package
            return self.bind("", top, top)
        raise TypeError(f"not a lazy object: {obj!r}")


def _render(value, imports: _Imports, indent: int, key: str) -> str:
    """``value`` as Python source, on one line when it fits in LINE_WIDTH, else one item per line."""
    from mmengine.config.lazy import LazyAttr, LazyObject

    if isinstance(value, (LazyObject, LazyAttr)):
        return imports.expression(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    pad, inner = " " * indent, " " * (indent + 4)
    if isinstance(value, dict):
        named = all(isinstance(k, str) and k.isidentifier() and not keyword.iskeyword(k) for k in value)
        items = [(f"{k}=" if named else f"{k!r}: ") + _render(v, imports, indent + 4, f"{key}.{k}")
                 for k, v in value.items()]
        opening, closing = ("dict(", ")") if named else ("{", "}")
    elif isinstance(value, (list, tuple)):
        items = [_render(v, imports, indent + 4, f"{key}[{i}]") for i, v in enumerate(value)]
        opening, closing = ("[", "]") if isinstance(value, list) else ("(", ",)" if len(value) == 1 else ")")
    else:
        raise TypeError(f"{key}: cannot write a {type(value).__name__} ({value!r}) into a config")
    one_line = opening + ", ".join(items) + closing
    if "\n" not in one_line and indent + len(key) + len(one_line) + 3 <= LINE_WIDTH:
        return one_line
    closing = ")" if closing == ",)" else closing  # the items carry their commas
    return opening + "\n" + "".join(f"{inner}{item},\n" for item in items) + pad + closing


def dump_config(path: str) -> str:
    """The config at ``path`` with its base parts resolved, as the source of one self-contained lazy-import config."""
    from mmengine.config import Config

    cfg = Config.fromfile(path)
    imports = _Imports()
    # _to_lazy_dict keeps imported objects lazy (their module paths are what we write) and leaves out names that were
    # only imported, as Config.to_dict does.
    body = [f"{key} = {_render(value, imports, 0, key)}" for key, value in cfg._to_lazy_dict().items()]
    source = osp.relpath(osp.abspath(path), osp.dirname(CONFIG_ROOT))
    header = [
        f"# {source}",
        "# flat, as written by `python tools/list_configs.py --dump`: every variable holds its final value and",
        "# there are no base parts (changing one variable here does not change the others).",
        *imports.lines,
        "",
        "# Applies mg_llava's compatibility patches while mmengine parses the config (see xtuner_configs/README.md).",
        '__import__("mg_llava")',
        "",
    ]
    return "\n".join(header + body) + "\n"


def _find_one(name: str, parser) -> str:
    if osp.isfile(name):
        return name
    matches = list_configs(name)
    if len(matches) != 1:
        listed = ": " + ", ".join(matches) if matches else ""
        parser.exit(1, f"--dump {name!r} matches {len(matches)} configs{listed}; name a path or exactly one config\n")
    return osp.join(osp.dirname(CONFIG_ROOT), matches[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-p", "--pattern", default="", help="case-insensitive substring to filter by")
    parser.add_argument("--dump", metavar="NAME", help="print this config flat (a path, or a pattern matching one)")
    parser.add_argument("-o", "--out", help="with --dump: write the flat config to this file instead of stdout")
    args = parser.parse_args(argv)
    if args.dump:
        text = dump_config(_find_one(args.dump, parser))
        if args.out:
            with open(args.out, "w") as f:
                f.write(text)
        else:
            sys.stdout.write(text)
        return
    configs = list_configs(args.pattern)
    if not configs:
        parser.exit(1, f"no config matches {args.pattern!r}\n")
    print("\n".join(configs))


if __name__ == "__main__":
    main()
