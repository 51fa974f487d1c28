# Two commands, each doing its own set-up (a local .venv; CPU torch pinned on machines without a GPU):
#   make run    the main job: train MDTv2-tiny on smileys (samples, metrics and curves under runs/)
#   make test   the whole test suite: unit tests + every lesson notebook under nbval (tiny profile)
VENV := .venv
PY := $(VENV)/bin/python
TEST_ENV := MDT_PROFILE=tiny MDT_STATIC=1 PYTHONHASHSEED=0
# a cell running past this fails, named, with its kernel's stack dump (conftest.py); the slowest takes ~1 min alone
CELL_TIMEOUT := 300

.PHONY: venv run test notebooks refresh browser-check bench

venv:
	bash tools/venv.sh

run: venv
	$(VENV)/bin/mdt-teach train

test: venv
	$(TEST_ENV) $(PY) -m pytest -q -p no:cacheprovider tests notebooks --nbval-lax --nbval-current-env \
		--nbval-cell-timeout=$(CELL_TIMEOUT)

notebooks: venv
	$(PY) tools/notebooks.py build

refresh: venv
	$(PY) tools/notebooks.py refresh

browser-check: venv
	bash tools/browser_deps.sh
	$(TEST_ENV) $(PY) -m pytest -q -p no:cacheprovider tests/browser -m browser -s

bench: venv
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done
