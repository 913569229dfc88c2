# The Run:ai Model Streamer beside the CPU vLLM, for `make bench` only (bench_cold_start
# serves the tiny model from a local S3 endpoint through it).
.PHONY: runai-venv

runai-venv: vllm-venv tiny-model ## create .venv-runai: .venv-vllm plus the Run:ai Model Streamer (bench only)
	PYTHON=$(PYTHON) local/runai_venv.sh

bench: runai-venv
