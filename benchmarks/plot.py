"""Draw ``benchmarks/results.png`` from the saved results: latency percentiles, bulk throughput against
batch size, and the gateway's broadcast latency, memory and connect rate against the number of
connections (SSE and WebSocket).

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

    fig, ((ax1, ax2), (ax3, ax4)) = plt.subplots(2, 2, figsize=(14, 9.6))
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
        _connections(ax3, ax4, connections["count_sweep"])
    fig.tight_layout()
    fig.savefig(OUTPUT, dpi=110)
    print(f"wrote {OUTPUT}")


def _connections(ax: Any, rates: Any, sweep: list[dict[str, Any]]) -> None:
    """Broadcast p99 and RSS per connection (one axis each) and the connect rate, per kind, against the count."""
    twin = ax.twinx()
    for kind, label, color in (("sse", "SSE", "tab:blue"), ("ws", "WebSocket", "tab:orange")):
        points = sorted((p for p in sweep if p.get("kind", "sse") == kind), key=lambda p: p["connections"])
        if not points:
            continue
        counts = [p["connections"] for p in points]
        ax.plot(counts, [p["broadcast_p99_s"] for p in points], marker="o", color=color,
                label=f"{label}: broadcast p99 (s)")
        twin.plot(counts, [p["rss_per_connection_kib"] for p in points], marker="s", ls="--", color=color,
                  label=f"{label}: RSS per connection (KiB)")
        rates.plot(counts, [p["connect_rate"] for p in points], marker="o", color=color, label=label)
    ax.set_xlabel("connections held by one gateway process")
    ax.set_ylabel("broadcast p99 (s)")
    ax.set_ylim(bottom=0)
    ax.axhline(1, color="grey", ls="--", lw=1)
    ax.axhline(4, color="grey", ls=":", lw=1)
    twin.set_ylabel("gateway RSS per connection (KiB)")
    twin.set_ylim(0, max(20, max(p["rss_per_connection_kib"] for p in sweep) * 1.3))
    twin.axhline(12, color="green", ls=":", lw=1)
    lines = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="upper left")
    ax.set_title("Gateway: broadcast p99 and memory vs connections\n(grey: p99 1 s at 10k, 4 s at 50k; "
                 "green: 12 KiB)", fontsize=10)
    rates.set_xlabel("connections held by one gateway process")
    rates.set_ylabel("connections opened per second")
    rates.set_ylim(bottom=0)
    rates.legend(fontsize=8)
    rates.set_title("Gateway: connect rate vs connections (200 opening at a time)", fontsize=10)


if __name__ == "__main__":
    main()
