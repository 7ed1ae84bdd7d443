"""Issue 16's figure: a broadcast to 100,000 users through a workflow, against the plain broadcast.

The workers read a workflows file whose ``wf-broadcast`` type has a realtime step and a digest step
(an hour, so every run opens its user's digest and waits); the same notification goes out once as a
type without a workflow (today's path, figure 3a) and once as ``wf-broadcast``, interleaved per run,
each timed from the call to the last inbox write, each run to 100,000 new users. Target: the
workflow's time at most 1.5x the plain broadcast's, in the same run.

    python -m benchmarks.workflow_broadcast [--users 100000] [--runs 3]
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path

from benchmarks.broadcast import NOTIFICATION, QUEUES, known_users, timed
from benchmarks.harness.database import bench_env, claim_and_flush, clear_data, users
from benchmarks.harness.meters import wait_quiet
from benchmarks.harness.processes import start_workers
from benchmarks.harness.profiling import profile
from benchmarks.harness.report import Figure, arguments, report

WORKFLOWS = """\
wf-broadcast:
  steps:
    - channel: realtime
    - digest: {window: 1h}
    - channel: push
"""


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="notifier-bench-"))
    (folder / "workflows.yaml").write_text(WORKFLOWS)
    env = bench_env(NOTIFIER_WORKFLOWS=str(folder / "workflows.yaml"))
    claim_and_flush()
    worker = start_workers(env, QUEUES)
    from notifier import broadcast

    n = args.users
    plain = Figure("plain broadcast to a user list", "s", higher_is_better=False)
    flow = Figure("broadcast through a workflow (realtime and digest steps)", "s", baseline_name="plain broadcast",
                  baseline_unit="s", target="<= 1.5x the plain broadcast", higher_is_better=False)
    stop_profile = profile(args.profile, "workflow_broadcast", {"workers": worker.pid})
    for run in range(args.runs):
        seconds = {}
        for kind, type_ in (("plain", NOTIFICATION["type"]), ("workflow", "wf-broadcast")):
            clear_data()
            recipients = users(f"wf{run}{kind}", n)
            known_users(recipients)
            wait_quiet()
            seconds[kind] = timed(partial(broadcast, {**NOTIFICATION, "type": type_}, user_ids=recipients),
                                  recipients, n, [worker])
        plain.add(seconds["plain"])
        flow.add(seconds["workflow"], seconds["plain"])
        print(f"run {run + 1}: plain {seconds['plain']:.2f} s, workflow {seconds['workflow']:.2f} s "
              f"({seconds['workflow'] / seconds['plain']:.2f}x)", flush=True)
    stop_profile()
    worker.stop()
    report("workflow_broadcast", [flow, plain], {"settings": {"users": n, "workflows": WORKFLOWS}})


if __name__ == "__main__":
    main()
