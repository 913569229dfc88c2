# The CDK Terrain stacks: synthesis, offline validation, emulator apply, checkov.
.PHONY: synth checkov checkov-venv emulator-prereqs

CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

synth: install ## synthesize the stacks to Terraform JSON and summarize them
	$(BIN)/python -m infra.main
	@echo "Terraform JSON: $(CURDIR)/cdktf.out/stacks/<stack>/cdk.tf.json"
	@$(BIN)/python -m infra.stack.summary cdktf.out

# checkov pins half of the AWS SDK: it lives in its own venv, never in .venv.
$(CHECKOV_STAMP):
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

checkov-venv: $(CHECKOV_STAMP) ## install checkov in .venv-checkov (idempotent)

checkov: checkov-venv synth ## scan the synthesized stacks (skips and reasons: infra/stack/checkov.yaml)
	$(CHECKOV_VENV)/bin/checkov --config-file infra/stack/checkov.yaml -d cdktf.out/stacks

# The emulator apply runs in a private network namespace: unshare (util-linux) and ip.
emulator-prereqs: ## install unshare and ip if missing (Debian)
	@command -v unshare >/dev/null || { apt-get update -qq && apt-get install -y -qq util-linux; }
	@command -v ip >/dev/null || { apt-get update -qq && apt-get install -y -qq iproute2; }
	@command -v terraform >/dev/null || { echo "terraform (>= 1.10) must be on the PATH"; exit 1; }

TEST_PREREQS += checkov-venv emulator-prereqs
