# The two commands of the README. Both create .venv on first use (tools/setup_env.sh; quick when nothing changed).
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# `xtuner train` re-launches `python`/`torchrun` from PATH.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup demo web-demo test clean rehearsal

setup:
	bash tools/setup_env.sh

demo: setup
	$(PY) tools/demo.py

# The web page on the model `make demo` trained (http://127.0.0.1:7860; WEB_DEMO_ARGS="--port 8080" etc.): the tiny
# photos' boxes from their box file, any other photo's found on the fly by the tiny (random-weight) OWLv2.
TINY_FINETUNE := work_dirs/mg_llava_tiny_cpu_finetune
web-demo: setup
	@test -f $(TINY_FINETUNE)/last_checkpoint || { echo "no trained tiny model: run 'make demo' first"; exit 1; }
	$(PY) tools/web_demo.py --config xtuner_configs/tiny/mg_llava_tiny_cpu_finetune.py \
		--checkpoint "$$(cat $(TINY_FINETUNE)/last_checkpoint)" --boxes work_dirs/tiny_assets/data/boxes.json \
		--detector work_dirs/tiny_assets/models/owlv2 --tagger fixed --score-threshold 0 --device cpu $(WEB_DEMO_ARGS)

# Two pytest workers, each test file on one (its module fixtures are built once); the suite's processes leave a
# core idle much of the time (imports, one-process runs), so two workers cut its wall time by about 30 %.
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest tests -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

clean:
	rm -rf work_dirs .pytest_cache

# A real config at full size on the CPU (random weights, generated data): stage 1 -> LoRA stage 2 -> export -> chat
# -> evaluate, measured (tools/rehearse.py; Phi-3: ~20 GB RAM, hours on 2 cores). REHEARSAL_CONFIG / REHEARSAL_ARGS.
REHEARSAL_CONFIG ?= xtuner_configs/phi3_mini_4k_instruct/mg_llava_phi3_mini_4k_instruct_pretrain.py
rehearsal: setup
	$(PY) tools/rehearse.py $(REHEARSAL_CONFIG) --work-dir work_dirs/rehearsal --json work_dirs/rehearsal.json $(REHEARSAL_ARGS)
