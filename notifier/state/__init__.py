"""What notifier holds in Redis, one module per kind of state, each the only reader and writer of its keys.

The send path (``notifier.pipeline``), the gateway and the CLI go through these classes, never the keys.
"""
