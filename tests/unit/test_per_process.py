"""``PerProcess``: one object per process, made again in a forked child (a real ``os.fork``)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import pytest

from notifier.per_process import PerProcess


class Thing:
    """A made object that knows its maker's pid and whether it was closed."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.closed = False

    def close(self) -> None:
        self.closed = True


def counting() -> tuple[PerProcess[Thing], list[Thing]]:
    made: list[Thing] = []

    def factory() -> Thing:
        made.append(Thing())
        return made[-1]

    return PerProcess(factory), made


def in_child(body: Callable[[], str]) -> str:
    """Run ``body`` in a forked child, give it 10 seconds, and return what it printed to a pipe."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running the parent's cleanup
        os.close(read)
        signal.alarm(10)
        try:
            answer = body()
        except BaseException as exc:  # noqa: BLE001  (reported to the parent as text)
            answer = f"raised {exc!r}"
        os.write(write, answer.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        answer = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"child ended with {status} (-14: stuck until SIGALRM)"
    return answer


def test_one_object_per_process() -> None:
    holder, made = counting()
    first = holder.get()
    assert holder.get() is first and made == [first]
    assert in_child(lambda: f"{holder.get().pid == os.getpid()} {holder.get() is holder.get()} {len(made)}") \
        == "True True 2"
    assert holder.get() is first and made == [first]  # the child's object stayed in the child


def test_threads_share_one_object() -> None:
    made: list[Thing] = []

    def slow() -> Thing:
        time.sleep(0.05)
        made.append(Thing())
        return made[-1]

    holder = PerProcess(slow)
    got: list[Thing] = []
    threads = [threading.Thread(target=lambda: got.append(holder.get())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and all(g is made[0] for g in got)


def test_fork_while_another_thread_holds_the_lock() -> None:
    """A thread inside the factory at fork time does not exist in the child; its lock must not either."""
    entered, release = threading.Event(), threading.Event()

    def stuck() -> Thing:
        entered.set()
        release.wait(10)
        return Thing()

    holder = PerProcess(stuck)
    maker = threading.Thread(target=holder.get)
    maker.start()
    try:
        assert entered.wait(5)
        holder._factory = Thing  # the child makes its own at once
        assert in_child(lambda: str(holder.get().pid == os.getpid())) == "True"
    finally:
        release.set()
        maker.join()


def test_factory_error_passes_through_and_the_next_call_tries_again() -> None:
    calls: list[int] = []

    def flaky() -> Thing:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("not configured")
        return Thing()

    holder = PerProcess(flaky)
    with pytest.raises(RuntimeError, match="not configured"):
        holder.get()
    assert isinstance(holder.get(), Thing) and len(calls) == 2


def test_reset_closes_and_the_next_get_makes_another() -> None:
    holder, made = counting()
    holder.reset(Thing.close)  # nothing made yet: nothing to close
    first = holder.get()
    holder.reset(Thing.close)
    assert first.closed
    second = holder.get()
    assert second is not first and not second.closed and len(made) == 2


def test_reset_in_a_child_closes_the_parents_object_only_when_asked() -> None:
    holder, _ = counting()
    parent = holder.get()

    def reset_in_child(inherited: bool) -> Callable[[], str]:
        def body() -> str:
            holder.reset(Thing.close, inherited=inherited)
            return f"{parent.closed} {holder.get() is not parent}"
        return body

    assert in_child(reset_in_child(inherited=False)) == "False True"
    assert in_child(reset_in_child(inherited=True)) == "True True"
    assert not parent.closed  # the children closed their copies


def test_set_installs_an_object() -> None:
    holder, made = counting()
    fake = Thing()
    holder.set(fake)
    assert holder.get() is fake and made == []
    assert in_child(lambda: str(holder.get() is not fake)) == "True"  # set is per process too
