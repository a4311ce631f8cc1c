# Every target builds the virtual environment first (`make setup`, idempotent).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
COURSE := $(VENV)/bin/diffusion-course
STAMP := $(VENV)/.installed
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/sanitize.cfg
# make run ARGS="--weeks 01 --profile offline -p seed=1"
ARGS ?=
SUBMISSIONS ?= submissions

.PHONY: setup setup-ray run test test-isa test-long test-browser test-fast notebooks setup-cells lab models assignments grade bench lint clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The optional Ray engine of `diffusion-course synthetic --engine ray` (its test skips without it).
setup-ray: setup
	$(PY) -m pip install -q -r requirements-ray.txt

run: setup
	$(COURSE) run $(ARGS)

# Two pytest workers, one per core; each test file (and each notebook) stays on one worker, whose kernels and
# subprocesses use one thread each (two pools of two threads on two cores spin against each other).
# WEEKS_ENV runs the notebooks' checked outputs under other settings (make test WEEKS_ENV='$(ISA)' runs them on
# test-isa's instruction set instead of natively).
JOBS ?= 2
XDIST := -n $(JOBS) --dist loadfile
WEEKS_ENV ?=
ISA := ATEN_CPU_CAPABILITY=default DNNL_MAX_CPU_ISA=SSE41

test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q $(XDIST) tests -m "not browser and not long"
	OMP_NUM_THREADS=1 $(WEEKS_ENV) $(PY) -m pytest -q $(XDIST) weeks $(NBVAL)

# Every week notebook opened in JupyterLab in headless Chromium (Debian's: apt-get install chromium), all cells run
# through the app, errors, figures and live widgets checked, a planted HF_TOKEN scanned for in everything written;
# screenshots in build/screens/. Two servers and browsers, one per core, share the notebooks.
test-browser: setup
	$(PY) -m pytest -q -n $(JOBS) --dist load tests/test_browser.py -m browser

# The notebooks' checked outputs once more with PyTorch's vector kernels and oneDNN's convolutions on another
# instruction set: the cheapest stand-in for another CPU (printed numbers must not depend on it).
test-isa: setup
	OMP_NUM_THREADS=1 $(ISA) $(PY) -m pytest -q $(XDIST) weeks $(NBVAL)

# The long tests, with reduced parameters: `make models` and `make run` killed with SIGKILL and
# resumed; every entry point run with a planted HF_TOKEN, every file written scanned for it (the week notebooks get
# that scan in test-browser, where they all run anyway).
test-long: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q $(XDIST) tests -m long

test-fast: setup
	$(PY) -m pytest -q tests -m "not slow and not browser and not long"

# Re-execute the committed notebooks in place on the offline profile (week outputs are what nbval checks).
notebooks: setup
	for nb in weeks/*/*.ipynb assignments/*/*.ipynb; do \
		(cd $$(dirname $$nb) && DIFFUSION_COURSE_HEADLESS=1 $(abspath $(VENV))/bin/jupyter nbconvert --to notebook --execute --inplace \
			--ExecutePreprocessor.kernel_name=python3 --ExecutePreprocessor.store_widget_state=False $$(basename $$nb)) || exit 1; \
	done

# Rewrite every notebook's setup cell (the code cell after its title) from course_utils/course/colab.py's template,
# and every week notebook's "Your turn" cell from exercises/NN_*.yml.
setup-cells: setup
	$(PY) -m course_utils.course.colab
	$(PY) -m course_utils.course.exercises

# JupyterLab on the repository root; the notebooks default to the offline profile. As root it needs --allow-root.
# make lab ARGS="--no-browser --port 8890"
lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=. $(if $(filter 0,$(shell id -u)),--allow-root) $(ARGS)

models: setup
	$(COURSE) models $(ARGS)

assignments: setup
	$(COURSE) assign $(ARGS)

grade: setup
	$(COURSE) grade $(SUBMISSIONS) $(ARGS)

bench: setup
	$(COURSE) bench $(ARGS)

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf build dist .pytest_cache
