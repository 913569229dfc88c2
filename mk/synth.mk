# The CDK Terrain stacks: synthesis, offline validation, emulator apply, checkov.
.PHONY: synth
synth: install ## synthesize the stacks to Terraform JSON and summarize them
	@echo "synth: not available yet (the CDK Terrain stack lands with the infra issue)"
