"""Run each benchmark module in turn; each prints its own side-by-side figures."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import bench


def main(selected: list[str]) -> int:
    names = sorted(
        module.name
        for module in pkgutil.iter_modules(bench.__path__)
        if module.name.startswith("bench_") and (not selected or module.name in selected)
    )
    for name in names:
        print(f"== {name}")
        importlib.import_module(f"bench.{name}").main()
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
