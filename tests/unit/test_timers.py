"""The gateway's shared timers (``notifier/gateway/timers.py``): due in order, cancellable, and one failing
callback does not stop the others."""

from __future__ import annotations

import asyncio

from notifier.gateway.timers import Timers


def test_timers_fire_in_order_skip_the_cancelled_and_survive_a_failing_callback() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        timers = Timers(loop)
        fired: list[str] = []
        loop.set_exception_handler(lambda _loop, context: fired.append(f"error {context['exception']}"))

        def boom() -> None:
            raise RuntimeError("boom")

        timers.call_later(0.06, lambda: fired.append("late"))
        cancelled = timers.call_later(0.03, lambda: fired.append("cancelled"))
        timers.call_later(0.02, boom)
        timers.call_later(0.01, lambda: fired.append("early"))  # earlier than what is armed: re-armed
        cancelled.cancel()
        assert cancelled.cancelled()
        await asyncio.sleep(0.04)
        assert fired == ["early", "error boom"]
        timers.call_later(0, lambda: fired.append("now"))
        await asyncio.sleep(0.05)
        assert fired == ["early", "error boom", "now", "late"]
        assert len(timers) == 0, "fired and cancelled timers leave the heap"

    asyncio.run(scenario())
