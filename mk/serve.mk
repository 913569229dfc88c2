# Local replica: vLLM on the CPU behind the gateway, exactly as an instance runs it.
.PHONY: serve
serve: install ## run one replica locally: vLLM on the CPU behind the gateway on :8000
	@echo "serve: not available yet (the gateway lands with the gateway issue)"
