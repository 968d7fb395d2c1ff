# Two entry points for a fresh machine:
#   make demo   - installs into .venv/ and runs the whole line locally (inspector demo)
#   make test   - installs into .venv/ and runs the test suite
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
# torch/torchvision releases that pip takes from this machine's local wheel cache; any CUDA or CPU
# build of these versions works.
TORCH   ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test install clean bench

$(STAMP): setup.cfg pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q $(TORCH)
	$(VPY) -m pip install -q -e '.[dev,kernel,genicam]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/inspector demo $(DEMO_ARGS)

test: $(STAMP)
	sh tools/test_deps.sh
	$(VPY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(VENV)/bin/inspector bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
