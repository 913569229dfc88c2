# The machine image: tools its tests need, the gateway wheel the image installs, the build.
.PHONY: ami-tools ami-wheel ami-build ami-test

AMI_WHEEL_DIR := build/ami/wheel

# shellcheck lints the provisioning scripts, systemd-analyze verifies the units, jq runs in
# the AMI-id publisher. Debian's packages, installed only when missing (CI runs as root on
# a fresh machine).
ami-tools: ## install shellcheck, systemd-analyze and jq for the image's tests
	@command -v shellcheck >/dev/null && command -v systemd-analyze >/dev/null \
		&& command -v jq >/dev/null || { \
		apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			shellcheck systemd jq; }

TEST_PREREQS += ami-tools

ami-test: install ami-tools ## run the image's tests (template, scripts, units, timeline)
	$(BIN)/pytest tests/ami

# The image installs the gateway from this wheel, pinned by the same constraints as .venv.
ami-wheel: install ## build the gateway wheel and its constraints into build/ami/wheel
	rm -rf $(AMI_WHEEL_DIR)
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir $(AMI_WHEEL_DIR) .
	cp constraints.txt $(AMI_WHEEL_DIR)/constraints.txt

# Needs Packer >= 1.9 with the amazon plugin and AWS credentials; extra settings go in
# PACKER_VARS, e.g. PACKER_VARS='-var model_s3_uri=s3://bucket/llama-3.1-8b/'.
ami-build: ami-wheel ## build the AMI with Packer and publish its id to SSM (needs AWS)
	@command -v packer >/dev/null || { echo "ami-build: packer is not installed" >&2; exit 1; }
	packer init ami/finsight-serving.pkr.hcl
	packer build $(PACKER_VARS) ami/finsight-serving.pkr.hcl
