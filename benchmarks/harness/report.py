"""Figures, the printed report and the JSON under ``benchmarks/results/`` that ``benchmarks.plot`` reads.

A figure is one measured quantity over several runs with its same-run baseline; the report gives the
median, min and max of each and of its ratio to the baseline, with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness.meters import machine
from tests.support.processes import ROOT

RESULTS = ROOT / "benchmarks" / "results"


def arguments(description: str, runs: int = 3) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=runs, help="repetitions (median and min-max are reported)")
    parser.add_argument("--profile", action="store_true",
                        help="record py-spy profiles of the workers and this process (slows the runs a little)")
    return parser


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def latency_summary(samples: Sequence[float]) -> dict[str, float]:
    return {f"p{q:g}": percentile(samples, q) for q in (50, 90, 99, 99.9)} | {
        "max": max(samples) if samples else float("nan"), "n": len(samples)}


@dataclass
class Figure:
    """One measured quantity over several runs, with its baseline from the same runs."""

    name: str
    unit: str
    values: list[float] = field(default_factory=list)
    baseline_name: str = ""
    baseline_unit: str = ""
    baselines: list[float] = field(default_factory=list)
    target: str = ""
    higher_is_better: bool = True

    def add(self, value: float, baseline: float | None = None) -> None:
        self.values.append(value)
        if baseline is not None:
            self.baselines.append(baseline)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def ratios(self) -> list[float]:
        return [v / b for v, b in zip(self.values, self.baselines, strict=False) if b]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "unit": self.unit, "values": self.values,
                               "median": self.median, "min": min(self.values), "max": max(self.values),
                               "target": self.target}
        if self.baselines:
            out |= {"baseline": self.baseline_name, "baseline_unit": self.baseline_unit,
                    "baselines": self.baselines, "baseline_median": statistics.median(self.baselines),
                    "ratio_median": statistics.median(self.ratios), "ratios": self.ratios}
        return out

    def line(self) -> str:
        text = (f"{self.name}: median {fmt(self.median)} {self.unit} "
                f"(min {fmt(min(self.values))}, max {fmt(max(self.values))}, runs {len(self.values)})")
        if self.baselines:
            text += (f"\n    baseline {self.baseline_name}: median {fmt(statistics.median(self.baselines))} "
                     f"{self.baseline_unit}; ratio median {statistics.median(self.ratios):.2f}x "
                     f"(min {min(self.ratios):.2f}x, max {max(self.ratios):.2f}x)")
        if self.target:
            text += f"\n    target: {self.target}"
        return text


def fmt(value: float) -> str:
    if value != value:
        return "nan"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def report(benchmark: str, figures: Sequence[Figure], extra: dict[str, Any] | None = None,
           command: str | None = None) -> Path:
    """Print the figures and save them (with the machine and any extra series) for the plot."""
    info = machine()
    print(f"\n== {benchmark} on {info['cores']} cores ({info['cpu']}), Redis {info['redis']}, "
          f"Python {info['python']}")
    for figure in figures:
        print(figure.line())
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{benchmark}.json"
    data = {"benchmark": benchmark, "command": command or "python -m " + " ".join(
        [f"benchmarks.{benchmark}", *sys.argv[1:]]), "machine": info, "at": time.strftime("%Y-%m-%d %H:%M:%S"),
            "figures": [f.summary() for f in figures], **(extra or {})}
    path.write_text(json.dumps(data, indent=1))
    print(f"saved {path.relative_to(ROOT)}")
    return path
