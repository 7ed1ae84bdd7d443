"""``notifier inbox USER`` with the state filters, as a subprocess on real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from notifier.state.inbox import Inbox
from tests.support.helpers import uid
from tests.unit.test_inbox_states import seed


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "notifier.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=60, check=False)


def ids(*args: str) -> list[str]:
    out = cli("inbox", *args, "--json")
    assert out.returncode == 0, out.stderr
    return [item["id"] for item in json.loads(out.stdout)]


def test_the_inbox_command_filters_by_state_and_shows_the_counts() -> None:
    box, user = Inbox(), uid("cli")
    nids = seed(box, user, 4)
    box.archive(user, [nids[0]])
    box.mark_seen(user, [nids[1]])
    box.mark_interacted(user, [nids[3]])
    assert ids(user) == [nids[3], nids[2], nids[1]]
    assert ids(user, "--archived") == [nids[0]]
    assert ids(user, "--unseen") == [nids[3], nids[2]]
    assert ids(user, "--archived", "--unread") == []
    text = cli("inbox", user).stdout
    assert text.splitlines()[0] == "3 unread, 2 unseen, 3 in the inbox, 1 archived, 0 snoozed"
    assert f"{nids[3]}  [test] title 3 (unseen) (acted on)" in text
    assert "no archived notifications" not in cli("inbox", user, "--archived").stdout
    box.unarchive(user, [nids[0]])
    assert cli("inbox", user, "--archived").stdout.strip() == f"{user}'s inbox has no archived notifications"
