# Everything a fresh machine needs: `make test` and `make demo` create the virtualenv, install the
# package with its extras and fetch the local servers on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LINT_PATHS := ddb2es_cli tests scripts demo $(wildcard bench)
DEMO_DYNAMODB_PORT ?= 8000
DEMO_ES_PORT ?= 9200
DEMO_ITEMS ?= 5000

.PHONY: install java test lint demo demo-down bench bench-scale lambda-zip clean

install: $(STAMP)

# PYTHONWARNINGS: setuptools' note about editable installs is noise here (one package).
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# DynamoDB Local needs Java, and javac once to build the launcher that binds it to 127.0.0.1:
# install a JDK from Debian's packages only when one is missing.
java:
	@command -v javac >/dev/null 2>&1 || { \
	  echo "javac not found: installing openjdk-17-jdk-headless"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq openjdk-17-jdk-headless; }

test: install java
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

# One line per step says what it proves; see demo/run.py. Ports: make demo DEMO_DYNAMODB_PORT=...
demo: install java
	$(BIN)/python demo/run.py $(DEMO_DYNAMODB_PORT) $(DEMO_ES_PORT) $(DEMO_ITEMS)

demo-down: install
	$(BIN)/ddb2es local down

bench: install java
	$(BIN)/python bench/run.py

# Start-up: `ddb2es --help` and the time to the first request, next to the floor (issue 14).
.PHONY: bench-startup
bench-startup: install
	$(BIN)/python bench/startup.py

# One run spread over 1 and 2 worker processes (state table), next to the plain reindex.
bench-scale: install java
	$(BIN)/python bench/scale.py

lambda-zip: install
	$(BIN)/python scripts/lambda_zip.py build/ddb2es-lambda.zip

clean:
	rm -rf $(VENV) .ddb2es-local .pytest_cache .mypy_cache .ruff_cache build *.egg-info
