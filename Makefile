# avemo: `make demo` and `make test` bootstrap everything on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
# CPU build by default; a GPU host sets e.g. TORCH_SPEC="torch==2.13.0" with its own index.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test test-all demo lint bench clean ffmpeg

setup: $(STAMP) ffmpeg

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install "$(TORCH_SPEC)"
	$(BIN)/pip install -c constraints.txt -e ".[test]"
	touch $(STAMP)

ffmpeg:
	@if command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = "0" ]; then \
		echo "installing ffmpeg from Debian"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null; \
	else \
		echo "error: ffmpeg/ffprobe not found; install them (e.g. 'sudo apt-get install -y ffmpeg') and rerun" >&2; \
		exit 1; \
	fi

test: setup
	$(BIN)/python -m pytest -m "not slow" tests

test-all: setup
	$(BIN)/python -m pytest tests

demo: setup
	$(BIN)/avemo demo $(or $(WORKDIR),demo-work)

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) demo-work .pytest_cache
