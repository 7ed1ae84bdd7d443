"""Preference updates merge atomically: concurrent changes (an unsubscribe link, the CLI) are all kept."""

from __future__ import annotations

import threading
import uuid

from notifier.state.preferences import PreferenceStore


def test_concurrent_updates_keep_every_change() -> None:
    user = f"prefs-{uuid.uuid4().hex[:8]}"
    store = PreferenceStore()
    store.set(user, {"email": f"{user}@example.test", "name": "Ada"})
    types = [f"type-{i}" for i in range(60)]
    start = threading.Barrier(6)

    def unsubscribe(mine: list[str]) -> None:
        start.wait()
        for type_ in mine:
            store.update(user, type_channels={type_: {"email": False}})

    threads = [threading.Thread(target=unsubscribe, args=(types[i::6],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    prefs = store.get(user)
    assert {t for t, channels in prefs.type_channels.items() if channels == {"email": False}} == set(types)
    assert prefs.email == f"{user}@example.test" and prefs.name == "Ada"
    store.update(user, type_channels={"type-0": {"realtime": False}})
    assert store.get(user).type_channels["type-0"] == {"email": False, "realtime": False}
