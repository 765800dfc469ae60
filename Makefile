# Vigil: two commands on a fresh Debian machine with Python 3.11:
#   make demo   - create .venv, install, import the shipped real incident, investigate it
#   make test   - install test dependencies and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
export VIGIL_HOME ?= $(CURDIR)/.vigil

.PHONY: demo test test-scaleout install install-test install-peers lint bench bench-peers clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test,peers]"
	@# the end-to-end test runs Debian's Prometheus and Alertmanager (it starts them itself)
	@command -v prometheus >/dev/null 2>&1 && command -v prometheus-alertmanager >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      prometheus prometheus-alertmanager >/dev/null; } || \
	  echo "note: install the Debian packages prometheus and prometheus-alertmanager for the end-to-end test"
	@# the console's browser tests drive Debian's Chromium with Playwright (no browser download)
	@command -v chromium >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } || \
	  echo "note: install the Debian package chromium for the console's browser tests"

# rcaeval's published methods for `vigil bench --peers` (see the peers extra in pyproject.toml)
install-peers: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[peers]"

demo: install
	$(BIN)/vigil import demo/nezha-trainticket --space demo --replace
	$(BIN)/vigil investigate --space demo --latest --format html

# the whole suite in the default (embedded) mode on TEST_WORKERS pytest-xdist workers, one test file per
# unit of work (tests/conftest.py says which files go together and which start first; TEST_WORKERS=0 runs
# it in one process), then one API suite again in scale-out mode (PostgreSQL, RabbitMQ, a Celery worker);
# tests/scaleout/ runs real `vigil serve` replicas and `vigil worker`s in both
TEST_WORKERS ?= 4
test: install-test
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
	VIGIL_TEST_MODE=scaleout $(BIN)/python -m pytest -q tests/test_api_flow.py

# the server, API and console suites in scale-out mode (VIGIL_TEST_MODE=scaleout: see tests/e2e/kit.py)
SCALEOUT_TESTS = tests/test_api_flow.py tests/test_api_authz.py tests/test_api_webhooks.py tests/test_api_otlp.py \
                 tests/test_security_headers.py tests/test_sources_api.py tests/browser/test_console_http.py \
                 tests/scaleout
test-scaleout: install-test
	VIGIL_TEST_MODE=scaleout $(BIN)/python -m pytest -q $(SCALEOUT_TESTS)

lint: install-test
	$(BIN)/ruff check src tests benchmarks

bench: install
	$(BIN)/vigil bench ../shared/datasets --json out/bench.json

bench-peers: install-peers
	$(BIN)/vigil bench ../shared/datasets --peers baro,nsigma --json out/bench-peers.json

clean:
	rm -rf $(VENV) .vigil out build *.egg-info
