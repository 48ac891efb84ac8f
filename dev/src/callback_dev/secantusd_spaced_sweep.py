"""``secantusd-py`` with its TTL sweep every ``SECANTUS_TTL_SWEEP_SECONDS`` (benchmarks only).

SecantusDB 0.7's sweeper walks every document of every collection in Python holding the GIL:
with 100k callbacks the server answers nothing for ~6.5 s once a minute (seen with py-spy).
Its CLI reads ``[storage] ttl_sweep_seconds`` from a config file but never hands it to the
server, so this launcher passes it; everything else is the stock CLI.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any

from secantus import cli, server  # type: ignore[import-untyped]


def main() -> None:
    sweep = float(os.environ["SECANTUS_TTL_SWEEP_SECONDS"])
    stock = server.SecantusDBServer.__init__

    @functools.wraps(stock)
    def with_sweep(self: Any, *args: Any, **kwargs: Any) -> None:
        stock(self, *args, **{**kwargs, "ttl_sweep_seconds": sweep})

    setattr(cli.SecantusDBServer, "__init__", with_sweep)  # noqa: B010
    sys.exit(cli.main(sys.argv[1:]))


if __name__ == "__main__":
    main()
