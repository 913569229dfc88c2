# Evidence under stress: overload, faults, drain, tenant isolation, fuzzing, security scans
# and the runbook's check. Loopback only; the figures land in build/evidence/.
.PHONY: stress

stress: install vllm-venv tiny-model ## run the stress, fuzz, security and runbook tests and print their figures
	$(BIN)/pytest tests/stress tests/fuzz tests/security tests/runbooks
