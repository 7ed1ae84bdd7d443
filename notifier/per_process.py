"""One object per process, made again after a fork: the Redis pool, push sessions, the APNs event loop.

Celery's prefork pool forks worker children from a parent that may already hold a connection. A
child must not use its parent's sockets (two processes would read each other's replies) nor its
event loop (the thread that ran it does not survive the fork), so each of these objects is kept in
a :class:`PerProcess`, which remembers the pid that made it and makes a new one in a child.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class PerProcess(Generic[T]):
    """``factory()``'s result, made on first use in each process and kept until :meth:`reset`.

    :meth:`get` is thread-safe and takes no lock once the object exists (double-checked locking:
    the object and its pid are read together, as one tuple). The lock itself is replaced in a forked
    child, so a fork while another thread was inside ``factory`` cannot leave the child waiting
    forever for a lock no thread of its own holds.
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._held: tuple[T, int] | None = None
        self._lock = threading.Lock()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _new_lock(ref))

    def get(self) -> T:
        """This process's object, made by ``factory`` if there is none yet (an error it raises
        passes through, and the next call tries again)."""
        held = self._held
        if held is None or held[1] != os.getpid():
            with self._lock:
                held = self._held
                if held is None or held[1] != os.getpid():
                    held = self._held = (self._factory(), os.getpid())
        return held[0]

    def set(self, value: T) -> None:
        """Use ``value`` in this process instead of making one (a test installs a fake Redis)."""
        with self._lock:
            self._held = (value, os.getpid())

    def reset(self, close: Callable[[T], object] | None = None, *, inherited: bool = True) -> None:
        """Forget the object, so the next :meth:`get` makes a new one.

        ``close`` is then called on it, outside the lock, unless it was made by the parent process
        and ``inherited`` is false: for an object whose closing would reach into the parent (an event
        loop whose self-pipe the parent still reads), not only drop this process's handle on it.
        """
        with self._lock:
            held, self._held = self._held, None
        if close is not None and held is not None and (inherited or held[1] == os.getpid()):
            close(held[0])


def _new_lock(ref: weakref.ref[PerProcess[Any]]) -> None:
    """After a fork, in the child: a fresh lock (a weak reference, so the hook keeps no holder alive)."""
    holder = ref()
    if holder is not None:
        holder._lock = threading.Lock()
