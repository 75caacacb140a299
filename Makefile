# The two commands of the README. Both create .venv on first use (tools/setup_env.sh; quick when nothing changed).
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# `xtuner train` re-launches `python`/`torchrun` from PATH.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup demo test clean

setup:
	bash tools/setup_env.sh

demo: setup
	$(PY) tools/demo.py

test: setup
	$(PY) -m pytest tests $(PYTEST_ARGS)

clean:
	rm -rf work_dirs .pytest_cache
