"""``notifier stats``: queue lengths, dead letters, deferred messages and workers seen."""

from __future__ import annotations

import click

from notifier.cli import echo_json, main


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True, max=300), default=1.0, show_default=True,
              help="Seconds to wait for workers.")
def stats(as_json: bool, timeout: float) -> None:
    """Messages waiting per queue, DLQ size, deferred messages, and the workers that answer."""
    import kombu.exceptions

    from notifier.pipeline.backlog import queue_depths
    from notifier.pipeline.producer import broker_unavailable, producer_app
    from notifier.state.deadletters import DeadLetters
    from notifier.state.schedule import Schedule

    queues = queue_depths()
    app = producer_app()
    try:
        workers = sorted(name for reply in app.control.ping(timeout=timeout) for name in reply)
    except (kombu.exceptions.OperationalError, *app.connection_for_read().connection_errors) as exc:
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

