"""``notifier stats``: queue lengths, dead letters, deferred messages and workers seen."""

from __future__ import annotations

import click
import kombu

from notifier.cli import echo_json, main


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True, max=300), default=1.0, show_default=True,
              help="Seconds to wait for workers.")
def stats(as_json: bool, timeout: float) -> None:
    """Messages waiting per queue, DLQ size, deferred messages, and the workers that answer."""
    import kombu.exceptions

    from notifier.pipeline.producer import broker_unavailable, producer_app
    from notifier.pipeline.queues import QUEUES
    from notifier.state.deadletters import DeadLetters
    from notifier.state.schedule import Schedule

    app = producer_app()
    conn = app.connection_for_read()
    try:
        with conn:
            conn.ensure_connection(**app.conf.task_publish_retry_policy)  # a publish's retries, not kombu's 2 + 2 s
            queues = {q: _size(conn, q) for q in QUEUES}
        workers = sorted(name for reply in app.control.ping(timeout=timeout) for name in reply)
    except (kombu.exceptions.OperationalError, *conn.connection_errors) as exc:
        raise broker_unavailable(exc) from None
    report = {"queues": queues, "dead_letters": DeadLetters().size(), "deferred": Schedule().size(),
              "workers": workers}
    if as_json:
        echo_json(report)
        return
    for name, size in queues.items():
        click.echo(f"queue {name:<10} {size}")
    click.echo(f"dead letters     {report['dead_letters']}")
    click.echo(f"deferred         {report['deferred']}")
    click.echo(f"workers          {len(workers)}" + (f": {', '.join(workers)}" if workers else ""))


def _size(conn: kombu.Connection, queue: str) -> int:
    """Messages ready in ``queue``; 0 when the broker has not declared it yet.

    A channel per queue: on AMQP a passive declare of a missing queue closes its channel.
    """
    channel = conn.channel()
    try:
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except conn.channel_errors:
        return 0
    finally:
        channel.close()
