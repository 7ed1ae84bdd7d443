"""``notifier workflows check|list|show`` and ``notifier runs list|show|cancel``"""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from notifier.cli import echo_json, main


@main.group()
def workflows() -> None:
    """Check and read the workflows file (NOTIFIER_WORKFLOWS)."""


@workflows.command()
@click.argument("path", type=click.Path(dir_okay=False))
def check(path: str) -> None:
    """Check a workflows file: errors name the file, line and step; quiet when it is fine."""
    from notifier.workflows.files import load

    load(path)


@workflows.command("list")
def list_workflows() -> None:
    """Each notification type with a workflow, and its steps."""
    from notifier.workflows.files import get_workflows

    found = get_workflows()
    if not found:
        click.echo("no workflows (NOTIFIER_WORKFLOWS is not set): every type goes to every enabled channel")
    for type_, workflow in sorted(found.items()):
        flag = " (critical)" if workflow.critical else ""
        click.echo(f"{type_}{flag}: " + " -> ".join(step.describe() for step in workflow.steps))


@workflows.command()
@click.argument("type_", metavar="TYPE")
def show(type_: str) -> None:
    """One type's workflow, step by step (the implicit one for a type without a workflow)."""
    from notifier.workflows.files import get_workflows

    found = get_workflows()
    workflow = found.for_type(type_)
    if type_ not in found:
        click.echo(f"{type_} has no workflow: every wanted, enabled channel at once")
        return
    click.echo(f"{type_}{' (critical: bypasses quiet hours and type opt-outs)' if workflow.critical else ''}")
    for number, step in enumerate(workflow.steps, 1):
        click.echo(f"  {number}. {step.describe()}")


@main.group()
def runs() -> None:
    """Workflow runs: list a user's, show one, cancel by cancel_key."""


def _when(epoch: float | None) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds") if epoch else "-"


def _readable(run: Any) -> dict[str, Any]:
    from notifier.workflows.files import get_workflows

    steps = get_workflows().for_type(run.workflow).steps
    shown = []
    for index, step in enumerate(steps):
        entry = run.log.get(index)
        if entry is not None:
            detail = f": {entry['detail']}" if entry.get("detail") else ""
            state = f"{entry['outcome']} at {_when(entry['at'])}{detail}"
        elif run.status == "cancelled" and index >= run.step:
            state = "cancelled"
        elif run.status == "waiting" and index == run.step:
            state = f"waiting until {_when(run.until)}"
        elif run.status == "done":
            state = "not reached"
        else:
            state = "pending"
        shown.append({"step": index + 1, "what": step.describe(), "state": state})
    return {"run_id": f"{run.user_id}/{run.run_id}", "workflow": run.workflow, "status": run.status,
            "started": _when(run.created), "title": run.notification.get("title"),
            "cancel_key": run.cancel_key, "steps": shown}


@runs.command("list")
@click.argument("user")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def list_runs(user: str, limit: int, as_json: bool) -> None:
    """A user's latest runs, newest first."""
    from notifier.models import check_user_id
    from notifier.workflows.runs import Runs

    found = [_readable(r) for r in Runs().latest(check_user_id(user), limit)]
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo(f"no workflow runs for {user}")
    for r in found:
        click.echo(f"{r['run_id']}  {r['started']}  {r['workflow']}  {r['status']}  {r['title']!r}")


@runs.command("show")
@click.argument("run_id", metavar="USER/RUN_ID")
def show_run(run_id: str) -> None:
    """One run, each step: done, waiting until T, skipped with the reason, cancelled."""
    from notifier.models import check_user_id
    from notifier.workflows.runs import Runs

    user, _, rid = run_id.rpartition("/")
    if not user or not rid:
        raise click.ClickException(f"{run_id!r}: a run id is USER/NOTIFICATION_ID, as `notifier runs list` shows")
    run = Runs().get(check_user_id(user), rid)
    if run is None:
        raise click.ClickException(f"no run {run_id} (runs are kept 14 days after their last step)")
    echo_json(_readable(run))


@runs.command("cancel")
@click.argument("cancel_key")
def cancel_runs(cancel_key: str) -> None:
    """Stop every pending step of the runs sent with CANCEL_KEY."""
    from notifier import cancel

    click.echo(f"cancelled {cancel(cancel_key)} run(s)")
