"""What every benchmark shares, one concept a module.

- ``database``: the dedicated Redis database (locked like a test session's), the settings that point
  at it, and the names of a run's users.
- ``processes``: worker and gateway subprocesses, stopped on exit, and spawned Python functions.
- ``drain``: when the pipeline is done (queues drained, every inbox write made).
- ``meters``: CPU and machine meters, and waiting for a quiet machine.
- ``baselines``: the same-run baselines (a no-op Celery task, raw pipelined XADD/PUBLISH, raw Pub/Sub).
- ``load``: live SSE and WebSocket clients by the thousand, in a process of their own (``sse``: the
  SSE client, cheap per connection).
- ``report``: figures, the printed report and the saved JSON for ``benchmarks.plot``; ``profiling``:
  py-spy profiles with ``--profile``.
"""
