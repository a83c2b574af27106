# Two commands do all the set-up on a fresh machine:
#   make run    install into .venv, then lesion block 3 of the embedded default ResNet
#   make test   install into .venv (with the test, timm and hf extras) and Fashion-MNIST, lint
#               (ruff, mypy), run every test (pytest -m "not slow" skips the end-to-end runs)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
SUDO    = $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FMNIST  = /usr/share/datasets/fashion-mnist

.PHONY: run test install install-test fashion-mnist lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install -q -e .

install-test: $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test,timm,hf]'

fashion-mnist:
	@[ -d $(FMNIST) ] || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q dataset-fashion-mnist; }

run: install
	$(BIN)/ensemble-lesion --drop-block 3

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/python -m mypy  # the package, as configured in pyproject.toml ([tool.mypy])

test: install-test fashion-mnist lint
	$(BIN)/python -m pytest
