"""``python -m bench [NAME]``: run every benchmark in bench/ (or one) on real infrastructure."""

from __future__ import annotations

import asyncio
import importlib
import logging
import pkgutil
import sys
import tempfile
from pathlib import Path

import structlog
import uvloop
from callback_dev.infra import provide

from bench.harness import table, write

NOT_BENCHMARKS = {"harness", "__main__"}


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name not in NOT_BENCHMARKS)


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    names = sys.argv[1:] or available()
    unknown = set(names) - set(available())
    if unknown:
        sys.exit(f"unknown benchmark(s) {sorted(unknown)}; available: {available()}")
    if not names:
        sys.exit("no benchmarks in bench/ yet")
    with tempfile.TemporaryDirectory(prefix="callback-bench-") as work_dir:
        infra = provide(Path(work_dir))
        try:
            for name in names:
                module = importlib.import_module(f"bench.{name}")
                # the services' event loop (uvicorn's, see callback_shared.runtime.serve): the
                # raw drivers beside them are measured on the same loop
                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    result = runner.run(module.run(infra))
                path = write(result)
                print(table(result))
                print(f"-> {path}\n")
        finally:
            infra.close()


if __name__ == "__main__":
    main()
