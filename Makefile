# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv themselves and
# install exactly requirements/lock.txt (versions and hashes); pyproject.toml keeps the ranges
# for people who install quackae as a library. `make lock` refreshes the lock (docs/cluster.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_OUT ?= demo_out
LOCK := requirements/lock.txt
LOWEST_LOCK := requirements/lock-lowest-ray.txt
LOWEST_RAY := 2.52.0
LOWEST_VENV := .venv-ray-low
LOCK_VENV := .venv-lock
PIP_TOOLS := pip-tools==7.7.0
COMPILE = $(LOCK_VENV)/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
	--extra dev --extra comet --no-emit-index-url --no-emit-find-links \
	pyproject.toml requirements/tools.in
RAY_TESTS := tests/test_cluster.py tests/test_fanout.py tests/test_ae_storage.py tests/test_encode.py \
	tests/test_lock.py

.PHONY: demo test lint install clean lock check-lowest-ray

# venv $(1) holding exactly lock $(2): hashes required, quackae itself editable on top, what the
# lock lacks removed, then the installed set checked against the lock (requirements/check_lock.py)
define install_locked
	test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install -q --require-hashes -r $(2)
	$(1)/bin/python -m pip install -q --no-deps --no-build-isolation -e .
	$(1)/bin/python requirements/check_lock.py $(2) --uninstall_extra
	echo $(2) > $(1)/.installed-stamp
endef

$(STAMP): pyproject.toml $(LOCK) requirements/check_lock.py
	$(call install_locked,$(VENV),$(LOCK))

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/quackae demo --storage_path $(DEMO_OUT)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks requirements
	$(BIN)/ruff format --check src tests benchmarks requirements

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

# The newest releases that pyproject.toml allows, locked with hashes; the lowest-Ray lock keeps
# every other pin of the new lock. Then the suite runs on the new lock: commit both locks if it
# passes (else `git checkout requirements/`).
lock: $(LOCK_VENV)/bin/pip-compile
	$(COMPILE) --upgrade -o $(LOCK)
	grep -E '^[A-Za-z0-9]' $(LOCK) | sed 's/ .*//' | grep -v '^ray==' > $(LOCK_VENV)/lowest.txt
	echo 'ray==$(LOWEST_RAY)' >> $(LOCK_VENV)/lowest.txt
	$(COMPILE) --upgrade -c $(LOCK_VENV)/lowest.txt -o $(LOWEST_LOCK)
	$(MAKE) test

$(LOCK_VENV)/bin/pip-compile:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q $(PIP_TOOLS)

# The Ray tests on the lowest Ray pyproject.toml allows (a venv of its own)
check-lowest-ray:
	$(call install_locked,$(LOWEST_VENV),$(LOWEST_LOCK))
	$(LOWEST_VENV)/bin/python -m pytest -q -p no:cacheprovider $(RAY_TESTS)

clean:
	rm -rf $(VENV) $(LOWEST_VENV) $(LOCK_VENV) $(DEMO_OUT) .pytest_cache .ruff_cache
