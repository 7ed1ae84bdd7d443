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
                        help="no gc.freeze and no periodic full pass: CPython's collector as it comes")
    parser.add_argument("uvicorn_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    start, stop = tuning.Collector.start, tuning.Collector.stop
    default = gc.get_threshold()
    thresholds = tuple(int(n) for n in args.gc_threshold.split(",")) if args.gc_threshold else default

    def patched_start(self: tuning.Collector) -> None:
        if not args.no_freeze:
            start(self)
        gc.set_threshold(*thresholds)

    async def patched_stop(self: tuning.Collector) -> None:
        if not args.no_freeze:
            await stop(self)
        gc.set_threshold(*default)

    tuning.Collector.start = patched_start  # type: ignore[method-assign]
    tuning.Collector.stop = patched_stop  # type: ignore[method-assign]
    rest = args.uvicorn_args[1:] if args.uvicorn_args[:1] == ["--"] else args.uvicorn_args
    sys.exit(uvicorn.main.main(args=rest, prog_name="uvicorn"))


if __name__ == "__main__":
    main()
