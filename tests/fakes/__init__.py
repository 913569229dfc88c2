"""Fakes for what cannot run in the unit tests: vLLM on a GPU, AWS itself."""
