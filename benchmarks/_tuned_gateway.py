"""The benchmark gateway with a piece of its tuning changed or switched off: ``uvicorn`` after a patch.

Figure 5 prices each piece of ``notifier/gateway/tuning.py`` by running the gateway without it, next
to runs with it. These switches exist here, for the benchmark, not as settings of the product:

    python -m benchmarks._tuned_gateway [--gc-threshold YOUNG,MIDDLE,OLD] [--no-freeze] -- UVICORN_ARGS

``--ws benchmarks._tuned_gateway:UnjoinedWebSocketProtocol`` (a uvicorn option) is the lean protocol
without its joined writes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from typing import Any

import uvicorn

from notifier.gateway import tuning


class UnjoinedWebSocketProtocol(tuning.LeanWebSocketProtocol):
    """The lean protocol writing each frame as it comes, to price :class:`notifier.gateway.tuning.JoinedWrites`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tuning.GuardedWebSocketProtocol.connection_made(self, transport)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gc-threshold", default=None,
                        help="gc.set_threshold while the gateway runs (700,10,10 is CPython's default)")
    parser.add_argument("--no-freeze", action="store_true",
                        help="no gc.freeze and no periodic full pass (the thresholds still apply)")
    parser.add_argument("uvicorn_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    init = tuning.Collector.__init__
    thresholds = tuple(int(n) for n in args.gc_threshold.split(",")) if args.gc_threshold else None

    def patched_init(self: tuning.Collector, *given: Any, **named: Any) -> None:
        init(self, *given, **named)
        if thresholds:
            self.thresholds = thresholds  # type: ignore[assignment]  # three ints, from the command line

    tuning.Collector.__init__ = patched_init  # type: ignore[method-assign]
    if args.no_freeze:
        def start(self: tuning.Collector) -> None:
            gc.set_threshold(*self.thresholds)

        async def stop(self: tuning.Collector) -> None:
            gc.set_threshold(*self._default_thresholds)

        tuning.Collector.start = start  # type: ignore[method-assign]
        tuning.Collector.stop = stop  # type: ignore[method-assign]
    rest = args.uvicorn_args[1:] if args.uvicorn_args[:1] == ["--"] else args.uvicorn_args
    sys.exit(uvicorn.main.main(args=rest, prog_name="uvicorn"))


if __name__ == "__main__":
    main()
