# mmib: `make demo` trains the CPU demo config with InfoBatch, `make test`
# runs the test suite. Both create .venv at the repo root on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

DATA_ROOT ?=
ITERS ?= 400
WORK_DIR ?= work_dirs/demo
DEMO_DATA := data/demo_ade
DEMO_CONFIG := configs/demo/fcn_r18-mini_infobatch_cpu-demo.py
PYTEST_ARGS ?=

.PHONY: install demo test test-fast clean

install: $(VENV)/.mmib-installed

# mmcv 2.1.0 has no wheel for this torch: it is built from source with its
# ops (about 13 minutes on 2 cores, once; pip caches the wheel). The build
# needs torch and a setuptools that still ships pkg_resources.
$(VENV)/.mmib-installed: requirements.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip 'setuptools>=77,<82' wheel
	$(PIP) install torch==2.13.0 numpy==1.26.4 opencv-python==4.11.0.86
	$(PY) -c "import mmcv.ops" 2>/dev/null || \
		MMCV_WITH_OPS=1 MAX_JOBS=$$(nproc) $(PIP) install --no-build-isolation mmcv==2.1.0
	$(PIP) install -r requirements.txt
	$(PIP) install --no-build-isolation --no-deps -e .
	$(PY) -c "import mmib, mmcv.ops; print('mmib', mmib.__version__, 'installed')"
	touch $@

demo: install
	@set -e; \
	data="$(DATA_ROOT)"; \
	if [ -z "$$data" ]; then \
		$(PY) tools/make_demo_data.py $(DEMO_DATA); data=$(DEMO_DATA); \
	fi; \
	$(PY) tools/train.py $(DEMO_CONFIG) --data-root "$$data" --work-dir $(WORK_DIR) \
		--cfg-options train_cfg.max_iters=$(ITERS) param_scheduler.0.end=$(ITERS) \
		train_cfg.val_interval=$(ITERS)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf work_dirs .pytest_cache
