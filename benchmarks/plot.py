"""Draw ``benchmarks/results.png`` from the saved results: latency percentiles, bulk throughput against
batch size, and the gateway's broadcast latency and memory against the number of connections.

    python -m benchmarks.plot      (needs matplotlib: pip install -e '.[bench]')
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.harness.report import RESULTS

OUTPUT = Path(__file__).resolve().parent / "results.png"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 4.8))
    latency = _load("latency")
    if latency:
        quantiles = ["p50", "p90", "p99", "max"]
        runs = latency["runs"]
        ours = [sorted(r["latency_ms"][q] for r in runs)[len(runs) // 2] for q in quantiles]
        raw = [sorted(r["raw_pubsub_ms"][q] for r in runs)[len(runs) // 2] for q in quantiles]
        x = range(len(quantiles))
        ax1.bar([i - 0.2 for i in x], ours, 0.4, label="send_notification -> gateway -> SSE client")
        ax1.bar([i + 0.2 for i in x], raw, 0.4, label="raw redis-py Pub/Sub")
        ax1.set_xticks(list(x), quantiles)
        ax1.set_yscale("log")
        ax1.set_ylabel("latency (ms, log)")
        ax1.axhline(10, color="grey", ls=":", lw=1)
        ax1.axhline(50, color="grey", ls="--", lw=1)
        ax1.set_title(f"Latency at {latency['settings']['rate']:.0f}/s, median of {len(runs)} runs\n"
                      "(dotted: 10 ms; dashed: 50 ms)", fontsize=10)
        ax1.legend(fontsize=8)
    bulk = _load("bulk_sends")
    if bulk and bulk.get("batch_sweep"):
        sweep = bulk["batch_sweep"]
        sizes = [p["batch_size"] for p in sweep]
        ax2.errorbar(sizes, [p["median"] for p in sweep],
                     yerr=[[p["median"] - p["min"] for p in sweep], [p["max"] - p["median"] for p in sweep]],
                     marker="o", capsize=3)
        ax2.set_xscale("log")
        ax2.set_xlabel("NOTIFIER_BATCH_SIZE")
        ax2.set_ylabel("notifications/s")
        ax2.set_title(f"send_bulk of {bulk['settings']['count']:,}: throughput vs batch size")
        ax2.set_ylim(bottom=0)
    connections = _load("connections")
    if connections and connections.get("count_sweep"):
        sweep = connections["count_sweep"]
        counts = [p["connections"] for p in sweep]
        ax3.plot(counts, [p["broadcast_p99_s"] * 1000 for p in sweep], marker="o", label="broadcast p99 (ms)")
        ax3.plot(counts, [p["broadcast_p50_s"] * 1000 for p in sweep], marker="o", label="broadcast p50 (ms)")
        ax3.set_xlabel("SSE connections held by one gateway process")
        ax3.set_ylabel("ms")
        twin = ax3.twinx()
        twin.plot(counts, [p["rss_per_connection_kib"] for p in sweep], marker="s", color="green",
                  label="RSS per connection (KiB)")
        twin.set_ylabel("KiB per connection")
        twin.set_ylim(0, max(50, max(p["rss_per_connection_kib"] for p in sweep) * 1.2))
        twin.axhline(20, color="green", ls=":", lw=1)
        ax3.axhline(1000, color="grey", ls="--", lw=1)
        lines = ax3.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        ax3.legend(lines, [ln.get_label() for ln in lines], fontsize=8)
        ax3.set_title("Gateway: broadcast latency and memory vs connections\n(dashed: 1 s; dotted: 20 KiB)",
                      fontsize=10)
    fig.tight_layout()
    fig.savefig(OUTPUT, dpi=110)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
