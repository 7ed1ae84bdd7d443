"""``notifier dlq list|show|replay|purge``"""

from __future__ import annotations

import sys

import click

from notifier.cli import echo_json, main


@main.group()
def dlq() -> None:
    """Inspect and replay deliveries that failed for good."""


@dlq.command("list")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def list_(limit: int, as_json: bool) -> None:
    """Dead letters, oldest first: id, time, user, channel, notification id, attempts, error."""
    from notifier.state.deadletters import DeadLetters, readable

    entries = [readable(e) for e in DeadLetters().list(limit)]
    if as_json:
        echo_json(entries)
        return
    if not entries:
        click.echo("dead-letter queue is empty")
    for e in entries:
        error = " ".join(str(e["error"]).split())
        click.echo(f"{e['id']}  {e['failed_at']}  user {_few(e['users'])}  channel {e['channel']}  "
                   f"notification {_few(e['notification_ids'])}  attempts={e['attempts']}  {error}")


def _few(values: list[str]) -> str:
    """The first value, and how many more ("alice +2"); "-" for none."""
    if not values:
        return "-"
    return values[0] + (f" +{len(values) - 1}" if len(values) > 1 else "")


@dlq.command()
@click.argument("entry_id")
def show(entry_id: str) -> None:
    """One dead letter in full (task, arguments, error, attempts, times)."""
    from notifier.state.deadletters import DeadLetters, readable

    found, _ = DeadLetters().lookup([entry_id])
    if not found:
        raise click.ClickException(f"no dead letter {entry_id} (see notifier dlq list)")
    echo_json(readable(found[0]))


@dlq.command()
@click.argument("entry_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Replay every dead letter.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the letters are re-queued.")
@click.option("--chunk", type=click.IntRange(1, 10_000), default=100, show_default=True,
              help="Dead letters per replay task.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="Seconds to wait per chunk.")
def replay(entry_ids: tuple[str, ...], all_: bool, wait: bool, chunk: int, timeout: float) -> None:
    """Send dead letters again, through Celery tasks (a worker must consume the router queue).

    Every id is checked first: one that names no dead letter queues nothing. Each entry is removed
    once it has been re-queued; whether it is then delivered shows in the worker log (or the DLQ).
    """
    from notifier.errors import ValidationError
    from notifier.pipeline import backlog

    if bool(entry_ids) == all_:
        raise ValidationError("name dead letter ids to replay, or --all (not both)")
    chunks, results = backlog.replay(list(entry_ids) if entry_ids else None, chunk)
    ids = [i for part in chunks for i in part]
    if not wait:
        click.echo(f"queued {len(ids)} for replay")
        return
    queued, missing = 0, []
    with click.progressbar(length=len(ids), label="re-queueing", file=sys.stderr) as bar:
        for part, result in zip(chunks, results, strict=True):
            try:
                outcome = result.get(timeout=timeout)
            except Exception as exc:  # noqa: BLE001  any task or backend failure ends the command in one line
                raise click.ClickException(f"a replay task did not finish in {timeout:g}s ({exc}); "
                                           "is a worker consuming the router queue?") from None
            queued += len(outcome["replayed"])
            missing += outcome["missing"]
            bar.update(len(part))
    click.echo(f"queued {queued} for replay")
    if missing:
        raise click.ClickException(f"no dead letter {', '.join(missing)} any more (replayed or purged meanwhile)")


@dlq.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge(yes: bool) -> None:
    """Delete every dead letter."""
    from notifier.state.deadletters import DeadLetters

    if not yes:
        click.confirm("Delete every dead letter?", abort=True)
    click.echo(f"purged {DeadLetters().purge()} dead letter(s)")
