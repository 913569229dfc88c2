# The user's command: the CDKTF CLI, pinned, in a project-local directory (never global).
# cdktf-cli 0.21 (the archived CDKTF) runs on node 20; the CDK Terrain CLI (cdktn-cli 0.24)
# needs node >= 22.19 and fails on node 20 (`util.markAsUncloneable is not a function`), so
# the test synthesizes with cdktf-cli, which reads the same cdktf.json.
.PHONY: cdktf-cli

CDKTF_CLI_VERSION := 0.21.0
CDKTF_CLI_DIR := build/cdktf-cli
CDKTF_CLI_STAMP := $(CDKTF_CLI_DIR)/.installed-$(CDKTF_CLI_VERSION)

$(CDKTF_CLI_STAMP):
	@command -v npm >/dev/null || { echo "cdktf-cli: npm (node >= 20) must be on the PATH"; exit 1; }
	rm -rf $(CDKTF_CLI_DIR)
	npm install --prefix $(CDKTF_CLI_DIR) --save-exact --no-audit --no-fund --loglevel=error \
		cdktf-cli@$(CDKTF_CLI_VERSION)
	touch $@

cdktf-cli: $(CDKTF_CLI_STAMP) ## install the cdktf CLI in build/cdktf-cli (idempotent)

TEST_PREREQS += cdktf-cli
