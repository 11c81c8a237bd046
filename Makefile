# Tandem — see README.md. Models and build outputs live under $(TANDEM_HOME) so repeated
# runs (and CI) reuse them.
SHELL := /bin/bash
TANDEM_HOME ?= $(HOME)/.cache/tandem
CARGO_TARGET_DIR ?= $(TANDEM_HOME)/target
export TANDEM_HOME CARGO_TARGET_DIR
BIN := $(CARGO_TARGET_DIR)/release/tandem
# Models the test suite needs (small and fast; the 0.5B SLM for tool calls in its own template).
TEST_MODELS := smollm2-135m qwen2.5-coder-0.5b minilm-l6 multilingual-e5-small
PORT ?= 8080

.PHONY: run test deps build lint test-models test-rust test-python bench bench-grammar eval-rag eval-tools eval-tools-vs-llama eval-script soak clean-target

## run: fetch the default models if missing, build, and serve on 127.0.0.1:$(PORT)
run: build
	$(BIN) serve --pull --port $(PORT)

## test: install what the tests need, then fmt + clippy + Rust and Python tests
test: deps lint build test-models test-rust test-python

deps:
	@scripts/install-deps.sh

build: deps
	cargo build --release --locked -p tandem

lint: deps
	cargo fmt --all --check
	cargo clippy --release --locked --all-targets -- -D warnings

test-models: build
	@for m in $(TEST_MODELS); do $(BIN) pull $$m || exit 1; done

test-rust: test-models
	cargo test --release --locked --workspace

test-python: build test-models
	TANDEM_BIN=$(BIN) python3 -m pytest -q tests/python

## bench-grammar: constrained vs free decoding, llguidance vs GBNF per-step cost (docs/benchmarks.md)
bench-grammar: test-models
	cargo bench --locked -p tandem-engine --bench grammar

## eval-rag: every question of both RAG sets (eval/rag, eval/rag-insurer) in RAG_MODES with
## the built-in SLM and LLM. Answers are cached in eval-out/rag*/outcomes.jsonl so that an
## interrupted run resumes; delete those files after changing prompts or retrieval.
## RAG_LIMIT=N: the first N questions of each language only. ~5 s per question in `local`.
RAG_MODES ?= local,escalate
RAG_LIMIT ?= 0
eval-rag: build
	TANDEM_KB_DIR=eval-out/kb $(BIN) eval rag --kb evalset --ingest eval/rag/kb \
	    --questions eval/rag/questions.jsonl --out eval-out/rag --modes $(RAG_MODES) --limit $(RAG_LIMIT) --pull
	TANDEM_KB_DIR=eval-out/kb $(BIN) eval rag --kb insurer --ingest eval/rag-insurer/kb \
	    --questions eval/rag-insurer/questions.jsonl --out eval-out/rag-insurer --modes $(RAG_MODES) --limit $(RAG_LIMIT) --pull

## soak: 10 minutes of mixed traffic (chat, streams, hang-ups, Messages, embeddings, kb search,
## explain, malformed requests) above the engine's slots against the real models: nothing
## hung, only 429/503 refusals, the ledger complete, RSS growth bounded. CI runs 60 s
## (tests/python/test_soak.py). SOAK_SECONDS to change the length.
SOAK_SECONDS ?= 600
soak: build test-models
	python3 scripts/soak.py --tandem $(BIN) --seconds $(SOAK_SECONDS)

## eval-script: Traditional-Chinese prompts (eval/zh-tw) to the bundled SLM with answer_script
## off and auto: the share of answers with no Simplified-only character (docs/routing.md).
## EVAL_SCRIPT_ARGS="--limit 10" for a short run. ~4 min.
eval-script: build test-models
	python3 scripts/eval-script.py --tandem $(BIN) $${EVAL_SCRIPT_ARGS:-}

## eval-tools: function-calling accuracy of the bundled SLM on eval/tools/cases.jsonl
## (EVAL_TOOLS_ARGS="--base URL" to score another OpenAI-compatible server instead)
eval-tools: build test-models
	python3 scripts/eval-tools.py $${EVAL_TOOLS_ARGS:---tandem $(BIN)}

## eval-tools-vs-llama: the same cases through llama.cpp's own llama-server (built from the
## vendored sources by scripts/build-llama-server.sh, ~15 min once) and through Tandem, on the
## same GGUF in one run, for each bundled chat SLM (EVAL_TOOLS_MODELS to choose)
EVAL_TOOLS_MODELS ?= qwen2.5-coder-0.5b smollm2-135m
eval-tools-vs-llama: build test-models
	scripts/build-llama-server.sh
	@for m in $(EVAL_TOOLS_MODELS); do \
	  python3 scripts/eval-tools.py --model $$m --tandem $(BIN) \
	    --llama-server $(TANDEM_HOME)/llama-server/bin/llama-server || exit 1; done

## bench: Tandem vs llama.cpp's own llama-bench / llama-batched-bench (see docs/benchmarks.md)
bench: build test-models
	scripts/bench.sh
