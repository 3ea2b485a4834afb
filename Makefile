# Anno: the two README commands are `make demo` and `make test`.
PY      ?= python3.11
VENV    ?= .venv
BIN     := $(VENV)/bin
MIRROR  ?= ../shared/corpus
CORPUS  ?= data/corpus
WORKERS ?= 2

.PHONY: install demo corpus test test-all bench clean

# Reinstall only when requirements.txt changes (the stamp is newer than it otherwise).
$(VENV)/.installed: requirements.txt
	@command -v $(PY) >/dev/null || { echo "need $(PY) on PATH (set PY=...)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $@

install: $(VENV)/.installed

# Built once; `make corpus` again (or delete $(CORPUS)) to rebuild.
$(CORPUS)/report.json: | $(VENV)/.installed
	$(BIN)/python cli.py corpus build --manifest training/sources.jsonl \
		$(if $(wildcard $(MIRROR)/sources.jsonl),--mirror $(MIRROR)) --out $(CORPUS) --workers $(WORKERS)

corpus: install
	rm -f $(CORPUS)/report.json
	$(MAKE) $(CORPUS)/report.json

# Today: install and build the dated corpus, then print its report (the model and app steps join here
# as they land).
demo: install $(CORPUS)/report.json
	$(BIN)/python cli.py corpus report $(CORPUS)

test: install
	$(BIN)/python -m pytest -q

test-all: install
	$(BIN)/python -m pytest -q --run-gpu --run-network

bench: install
	@for f in benchmarks/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf data runs .pytest_cache
