"""The fleet simulator: replay trading days against a scaling config before deploying it.

`runner.run_configs` is the entry point; `fleet simulate` and `fleet check` call it.
"""
