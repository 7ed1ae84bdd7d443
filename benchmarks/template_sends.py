"""Figure 9: the cost of templates on the bulk path (issue 17): ``send_bulk`` of 10,000 notifications
to 10,000 users (half of them German, half English), router -> realtime, each notification rendered
from ``benchmarks/templates/benchmark`` at delivery, beside the same bulk send with pre-rendered
title and body, alternating in the same run against the same worker. Every notification is distinct,
so each delivery renders (the cache shares nothing): the per-delivery cost. The pre-rendered sends are
of a type without a template (a type with one is rendered even when it carries a title). Target: at least 0.8x the
pre-rendered rate (templates compiled once per process, not per message). Also shown: the worker's CPU
per delivery in both modes (what rendering adds where the machine is not the bound).

    python -m benchmarks.template_sends [--count 10000] [--runs 3] [--template benchmark|simple]
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.harness.database import bench_env, claim_and_flush, clear_data, users
from benchmarks.harness.drain import wait_inboxes
from benchmarks.harness.meters import CpuMeter, wait_quiet
from benchmarks.harness.processes import Worker, start_workers
from benchmarks.harness.profiling import profile
from benchmarks.harness.report import Figure, arguments, report

QUEUES = ["router", "realtime"]
TEMPLATES = Path(__file__).parent / "templates"


def one_run(tag: str, count: int, workers: list[Worker], templated: bool, template: str = "benchmark") -> float:
    """Notifications per second, from the ``send_bulk`` call to the last inbox write."""
    from notifier import send_bulk
    from notifier.state.preferences import PreferenceStore

    recipients = users(f"tpl{tag}", count)
    prefs = PreferenceStore()
    pipe = prefs.r.pipeline(transaction=False)
    for i, user in enumerate(recipients):  # every user has preferences in both modes: the same reads
        pipe.set(prefs.keys.preferences(user), f'{{"locale": "{"de" if i % 2 else "en"}"}}')
    pipe.execute()
    data = {"text": "Something happened.", "actor": {"name": "Ada"}}
    if templated:
        items = [(user, {"type": template, "template": template, "data": {**data, "seq": i},
                         "channels": ["realtime"]}) for i, user in enumerate(recipients)]
    else:
        items = [(user, {"type": "prerendered", "title": f"1 new comment · {i:,}", "body": "Ada commented: Something "
                         "happened.", "data": {**data, "seq": i}, "channels": ["realtime"]})
                 for i, user in enumerate(recipients)]
    start = time.time()
    send_bulk(items)
    end = wait_inboxes(recipients, count, QUEUES, timeout=180, workers=workers)
    return count / (end - start)


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--template", choices=["benchmark", "simple"], default="benchmark",
                        help="benchmark: a plural, a number and a translated sentence (the figure); simple: "
                             "two variables, no translation (what the template language alone costs)")
    args = parser.parse_args()
    env = bench_env(NOTIFIER_TEMPLATES_DIR=str(TEMPLATES))
    claim_and_flush()
    worker = start_workers(env, QUEUES)
    figure = Figure("templated bulk sends", "notifications/s", baseline_name="the same bulk send, pre-rendered",
                    baseline_unit="notifications/s", target=">= 0.8x the pre-rendered rate")
    cpu = Figure("worker CPU per templated delivery", "µs", baseline_name="per pre-rendered delivery",
                 baseline_unit="µs", higher_is_better=False)
    stop_profile = profile(args.profile, "template_sends", {"workers": worker.pid})
    clear_data()
    one_run("warm", min(args.count, 1000), [worker], True, args.template)  # both modes start with compiled templates
    for run in range(args.runs):
        rates, costs = {}, {}
        for templated in ((False, True) if run % 2 == 0 else (True, False)):
            clear_data()
            wait_quiet()
            meter = CpuMeter([worker]).start()
            rates[templated] = one_run(f"{run}{'t' if templated else 'p'}", args.count, [worker], templated,
                                       args.template)
            costs[templated] = meter.stop()[worker.name] / args.count * 1e6
            print(f"run {run + 1} {'templated' if templated else 'pre-rendered'}: {rates[templated]:,.0f} "
                  f"notifications/s\n    {meter.line()}")
        figure.add(rates[True], rates[False])
        cpu.add(costs[True], costs[False])
        print(f"run {run + 1}: ratio {rates[True] / rates[False]:.2f}; worker CPU per delivery "
              f"{costs[True]:.0f} µs against {costs[False]:.0f} µs")
    stop_profile()
    worker.stop()
    report("template_sends", [figure, cpu], {"settings": {"count": args.count, "template": args.template}})


if __name__ == "__main__":
    main()
