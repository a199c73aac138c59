# Two entry points: `make demo` (set up, then run the embedded demonstration) and `make test`.
VENV ?= .venv
# on Linux: cpu, cuda12 or cuda13 (MLX's CUDA build for that CUDA major version)
MLX_BACKEND ?= cpu

.PHONY: setup demo test

$(VENV)/.setup-done: pyproject.toml scripts/setup.sh
	VENV=$(VENV) MLX_BACKEND=$(MLX_BACKEND) bash scripts/setup.sh
	touch $@

setup: $(VENV)/.setup-done

demo: setup
	$(VENV)/bin/mlx-rvc demo

test: setup
	$(VENV)/bin/python -m pytest -q
