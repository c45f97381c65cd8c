# Two commands on a fresh machine:  `make demo`  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ichseg-installed
DEMO_OUT ?= outputs/demo
FRONTEND := src/ichseg/app/frontend

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt $(FRONTEND)/package-lock.json
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e ".[all]"
# nnU-Net v2: nnunetv2 + dynamic-network-architectures without their declared deps (they pull
# timm/torchvision/CUDA torch), then their real deps; `pip check` will name timm as missing.
	$(PY) -m pip install --quiet --no-deps -c constraints.txt nnunetv2 dynamic-network-architectures
	$(PY) -m pip install --quiet -c constraints.txt -e ".[nnunet-deps]"
	@! $(PY) -m pip list 2>/dev/null | grep -i -E "^(nvidia|triton|torchvision|timm)[-_ ]" || { echo "CUDA/timm packages were installed; see docs/nnunet.md"; exit 1; }
	@command -v npm >/dev/null || { echo "npm is needed to build the app's page (apt-get install nodejs npm)"; exit 1; }
	cd $(FRONTEND) && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ichseg demo --out $(DEMO_OUT)

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
