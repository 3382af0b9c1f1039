# One command per question. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# tcmalloc: glibc malloc spends 30-40% of CPU training time in page faults on small VMs.
TCMALLOC := $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 /usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4))
RUN := $(if $(TCMALLOC),LD_PRELOAD=$(TCMALLOC) ,)$(PY)

DATA ?= data
DEMO_DATA ?= data/demo
RUN_NAME ?=
EPOCHS ?= 30
OUT ?= outputs

.PHONY: help setup demo demo-data test train test-eval bench clean-demo

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.14.1 torchvision==0.29.1
	$(VENV)/bin/pip install -q -e .
	touch $@

setup: $(VENV)/.installed ## create .venv and install the project with its dependencies

demo-data: setup ## write the synthetic 10-class demo dataset to data/demo
	$(PY) -m common.demo_data --out $(DEMO_DATA)

demo: setup demo-data ## the whole pipeline, offline, on the demo data (a few minutes on CPU)
	WANDB_MODE=$${WANDB_MODE:-offline} $(RUN) partA/model_info.py --filters 16,32,64,128,256 --kernel-sizes 3 --dense-units 256 --image-size 224
	rm -rf runs/demo-scratch
	WANDB_MODE=$${WANDB_MODE:-offline} $(RUN) partA/train.py --data-dir $(DEMO_DATA) --run-name demo-scratch \
		--image-size 64 --epochs 30 --filters 16,32,64,128,256 --dense-units 256 --aug-strength 0.5 --quiet
	$(RUN) partA/evaluate.py --data-dir $(DEMO_DATA) --run demo-scratch --out $(OUT)/demo
	@echo "demo outputs: runs/demo-scratch (run record, checkpoints), $(OUT)/demo (test accuracy, confusion matrix, grid)"

test: setup ## run the test suite (CPU, a few minutes)
	WANDB_MODE=disabled $(RUN) -m pytest

train: setup ## train the Part A CNN on the real data (DATA=folder with inaturalist_12K or the zip)
	$(RUN) partA/train.py --data-dir $(DATA) --epochs $(EPOCHS) $(if $(RUN_NAME),--run-name $(RUN_NAME),)

test-eval: setup ## evaluate the best checkpoint on the TEST set (RUN=name, default: best run)
	$(RUN) partA/evaluate.py --data-dir $(DATA) $(if $(RUN),--run $(RUN),) --out $(OUT)/test-eval

bench: setup ## seed pipeline vs ours, epoch throughput on 500x375 JPEGs at 128 px
	$(RUN) partA/bench.py

clean-demo:
	rm -rf $(DEMO_DATA) runs/demo-* $(OUT)/demo
