"""Workflows: what happens to a notification of a given ``type``, step by step (issue 16).

``model`` is what a workflow is, ``files`` reads them from ``NOTIFIER_WORKFLOWS``, ``runs`` keeps each
run's state in Redis and ``engine`` moves runs forward in batches. A type without a workflow goes to
every enabled channel at once, as before.
"""
