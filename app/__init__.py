"""The per-instance gateway: an OpenAI-compatible FastAPI server in front of vLLM."""
