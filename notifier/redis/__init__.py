"""Redis itself: the connection of this process, the URL forms, every key name and the Lua scripts.

Nothing here knows what a notification is; ``notifier.state`` builds on it.
"""
