"""The deployment files agree with each other and with the code."""

from __future__ import annotations

import shutil
import subprocess

import yaml

from notifier.pipeline.queues import QUEUES
from tests.support.helpers import ROOT


def procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = command.strip()
    return entries


def test_compose_matches_procfile_and_scales_by_queue() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name, command in procfile().items():
        assert name in services, f"Procfile process {name} missing from docker-compose.yml"
        assert services[name]["command"] == command, name
    consumed = set()
    for command in procfile().values():
        if " -Q " in command:
            consumed |= set(command.split(" -Q ")[1].split()[0].split(","))
    assert consumed == set(QUEUES), "every queue has a worker pool"
    redis_cmd = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_cmd, "Redis keeps inboxes and the DLQ: persistence on"
    assert "ports" not in services["push"], "push scales with --scale push=N"


def test_compose_config_validates() -> None:
    """``docker compose config`` (or Debian's docker-compose, installed by scripts/services.sh)."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        command = [docker, "compose"]
    else:
        legacy = shutil.which("docker-compose")
        assert legacy, "no docker compose client: run scripts/services.sh (installs docker-compose)"
        command = [legacy]
    env = {"NOTIFIER_SECRET_KEY": "x", "NOTIFIER_FLOWER_PASSWORD": "y", "NOTIFIER_POSTGRES_PASSWORD": "z",
           "PATH": "/usr/bin:/bin"}
    result = subprocess.run([*command, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    for secret in (name for name in env if name != "PATH"):
        missing = subprocess.run([*command, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                                 capture_output=True, text=True, env={k: v for k, v in env.items() if k != secret})
        assert missing.returncode != 0 and secret in missing.stderr, f"{secret} must be required"


def test_readme_documents_every_setting() -> None:
    from notifier.config import Settings

    readme = (ROOT / "README.md").read_text()
    missing = [f"NOTIFIER_{name.upper()}" for name in Settings.model_fields
               if f"NOTIFIER_{name.upper()}" not in readme]
    assert missing == [], f"README's configuration table lacks {missing}"
