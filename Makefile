# Two entry points: `make demo` and `make test`. Both create the virtual environment when missing.
# `make demo-train` trains on phantoms instead; `make model` rebuilds the shipped model from ../shared/data.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kidneyct-installed

.PHONY: demo demo-train model test docs install clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e ".[dev]"
	touch $(STAMP)

# The shipped model (its ONNX export: no torch to load) on a real CT (examples/, Apache-2.0): a study report, its
# path printed. Add `--backend torch` for Grad-CAM heatmaps on its key images.
demo: $(STAMP)
	$(VENV)/bin/kidneyct predict examples/abdomen-ct-30slices.nii.gz --out runs/demo/predictions.csv \
		--report runs/demo/report --no-progress

demo-train: $(STAMP)
	$(VENV)/bin/kidneyct demo-train --out runs/demo-train

# Trains, checks and stores src/kidneyct/weights/default.{pt,onnx} and docs/model-card.md (what: benchmarks/shipped_model.py).
model: $(STAMP)
	$(PY) benchmarks/shipped_model.py

test: $(STAMP)
	$(PY) -m pytest -q

# The docs site (mkdocs.yml, docs/) into site/; --strict: a broken link or anchor fails. tests/test_docs.py builds it too.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs .pytest_cache site
