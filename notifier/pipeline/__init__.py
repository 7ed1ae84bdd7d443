"""The send path: producer -> router -> delivery, the retry policy, task names and queues, Celery's config.

It decides with ``notifier.state`` and sends with ``notifier.channels``; ``workers/`` holds the thin tasks.
"""
