"""List this project's training configs (``xtuner list-cfg`` only knows XTuner's own).

    python tools/list_configs.py [-p PATTERN]

Prints one path per line, relative to the repository, for use with ``xtuner train``.
"""
import argparse
import os.path as osp
from glob import glob

CONFIG_ROOT = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), "xtuner_configs")


def list_configs(pattern: str = "") -> list:
    paths = sorted(glob(osp.join(CONFIG_ROOT, "**", "*.py"), recursive=True))
    rel = [osp.relpath(p, osp.dirname(CONFIG_ROOT)) for p in paths]
    return [p for p in rel if pattern.lower() in p.lower()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-p", "--pattern", default="", help="case-insensitive substring to filter by")
    args = parser.parse_args(argv)
    configs = list_configs(args.pattern)
    if not configs:
        parser.exit(1, f"no config matches {args.pattern!r}\n")
    print("\n".join(configs))


if __name__ == "__main__":
    main()
