"""``notifier dlq list|show|replay|purge``"""

from __future__ import annotations

import datetime as dt

import click

from notifier.cli import echo_json, main


@main.group()
def dlq() -> None:
    """Inspect and replay deliveries that failed for good."""


@dlq.command("list")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def list_(limit: int, as_json: bool) -> None:
    """Dead letters, oldest first."""
    from notifier.deadletters import DeadLetters

    entries = DeadLetters().list(limit)
    if as_json:
        echo_json(entries)
        return
    if not entries:
        click.echo("dead-letter queue is empty")
    for e in entries:
        when = dt.datetime.fromtimestamp(e["failed_at"], dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        click.echo(f"{e['id']}  {when}  {e['task']}  attempts={e['attempts']}  {e['error']}")


@dlq.command()
@click.argument("entry_id")
def show(entry_id: str) -> None:
    """One dead letter in full (task, arguments, error, attempts, times)."""
    from notifier.deadletters import DeadLetters

    entry = DeadLetters().get(entry_id)
    if entry is None:
        raise click.ClickException(f"no dead letter {entry_id}")
    echo_json(entry)


@dlq.command()
@click.argument("entry_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Replay every dead letter.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the replay tasks to finish.")
@click.option("--chunk", type=click.IntRange(1, 10_000), default=100, show_default=True,
              help="Dead letters per replay task.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait per chunk.")
def replay(entry_ids: tuple[str, ...], all_: bool, wait: bool, chunk: int, timeout: float) -> None:
    """Send dead letters again, through Celery tasks (a worker must consume the router queue).

    Each entry is removed only once it has been re-enqueued.
    """
    from notifier.deadletters import DeadLetters
    from notifier.errors import ValidationError
    from notifier.inbox import check_entry_id
    from notifier.producer import producer_app
    from notifier.queues import REPLAY, queue_of

    if bool(entry_ids) == all_:
        raise ValidationError("name dead letter ids to replay, or --all (not both)")
    ids = [check_entry_id(i) for i in entry_ids] if entry_ids else [e["id"] for e in DeadLetters().all()]
    app = producer_app()
    chunks = [ids[i:i + chunk] for i in range(0, len(ids), chunk)]
    results = [app.send_task(REPLAY, args=[part], queue=queue_of(REPLAY)) for part in chunks]
    click.echo(f"replay of {len(ids)} dead letter(s) queued in {len(results)} task(s)")
    if not wait:
        return
    replayed, missing = 0, []
    with click.progressbar(length=len(ids), label="replaying", file=click.get_text_stream("stderr")) as bar:
        for part, result in zip(chunks, results):
            try:
                outcome = result.get(timeout=timeout)
            except Exception as exc:
                raise click.ClickException(f"a replay task did not finish in {timeout:.0f}s ({exc}); "
                                           "is a worker consuming the router queue?") from None
            replayed += len(outcome["replayed"])
            missing += outcome["missing"]
            bar.update(len(part))
    click.echo(f"replayed {replayed}")
    if missing:
        raise click.ClickException(f"not found: {', '.join(missing)}")


@dlq.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge(yes: bool) -> None:
    """Delete every dead letter."""
    from notifier.deadletters import DeadLetters

    if not yes:
        click.confirm("Delete every dead letter?", abort=True)
    click.echo(f"purged {DeadLetters().purge()} dead letter(s)")
