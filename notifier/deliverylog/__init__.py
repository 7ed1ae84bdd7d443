"""The delivery log: every decision and outcome of a notification as an event, kept in a database.

Producers of events (the router, the delivery tasks, the workflow engine, the dead-letter CLI, the
gateway) only append them to a bounded Redis stream (``events.EventLog``), one command per task batch;
the drain task writes them to PostgreSQL or SQLite (``schema``) in batches, so the database is never
on the delivery path and an outage only makes the events wait.
"""
