# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test test-fast demo clean

install: $(STAMP)

# torch==2.13.0 goes first so that nothing later resolves a CUDA build; open3d needs libusb-1.0;
# the dashboard's browser tests need Debian's chromium (playwright drives it; no browser download).
$(STAMP): pyproject.toml
	@ldconfig -p | grep -q 'libusb-1.0.so.0' || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing libusb-1.0-0 for open3d"; \
	    (apt-get install -y -qq libusb-1.0-0 >/dev/null 2>&1 || \
	     (apt-get update -qq && apt-get install -y -qq libusb-1.0-0 >/dev/null)); \
	  else echo "warning: libusb-1.0 is missing; install libusb-1.0-0 to use open3d"; fi; }
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium and chromium-driver for the dashboard's browser tests"; \
	    (apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
	     (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null)); \
	  else echo "warning: chromium is missing; install chromium and chromium-driver for the dashboard tests"; fi; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m 'not slow'

demo: install
	$(VENV)/bin/mmer demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
