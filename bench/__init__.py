"""Benchmarks, kept apart from the tests: `make bench` runs every `bench_*.py` module's main()."""
