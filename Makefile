# Voicebot platform. `make run` and `make test` work on a fresh machine: they install first.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PACKAGES := espeak-ng sox sip-tester kamailio

.PHONY: install run test test-unit lint proto proto-check bench broker clean

$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh "$(PY)" "$(VENV)" "$(APT_PACKAGES)"
	touch $(STAMP)

install: $(STAMP)

proto: $(STAMP)
	$(BIN)/python -m voicebot.protogen

run: $(STAMP)
	$(BIN)/voicebot demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python bench/bus_latency.py
	$(BIN)/python bench/turn_latency.py
	$(BIN)/python bench/barge_in.py
	$(BIN)/python bench/end_of_turn.py
	$(BIN)/python bench/amd_accuracy.py
	$(BIN)/python bench/telephony_load.py --calls 100 --rate 4 --prewarm

broker: $(STAMP)
	$(BIN)/voicebot broker

clean:
	rm -rf $(VENV) var .pytest_cache
