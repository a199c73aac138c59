# Two entry points: `make demo` (set up, then run the embedded demonstration) and `make test`.
VENV ?= .venv

.PHONY: setup demo test

$(VENV)/.setup-done: pyproject.toml scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh
	touch $@

setup: $(VENV)/.setup-done

demo: setup
	$(VENV)/bin/mlx-rvc demo

test: setup
	$(VENV)/bin/python -m pytest -q
