"""What ``NOTIFIER_REDIS_URL`` names: one server, a Redis Cluster, or the master a Sentinel watches.

One parser for the library's clients (``notifier.redis.store``) and the gateway's asyncio ones
(``notifier.redis.aio``), so both read credentials the same way:

- ``redis://``, ``rediss://``, ``unix://``: one server, in redis-py's own URL form (credentials, TLS
  and database included);
- ``redis+cluster://[[user]:password@]h1:7000,h2:7001``: a Redis Cluster, any reachable nodes to start
  from; the credentials are the nodes' (``requirepass`` / ACL user);
- ``redis+sentinel://[[user]:password@]s1:26379,s2:26379/mymaster/0``: the master the Sentinels name
  ``mymaster``, database 0. The credentials are the master's; Sentinels that have a password of
  their own take ``?sentinel_password=...`` (and ``&sentinel_username=...``).

Passwords with reserved characters are percent-encoded, as in any URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from notifier.errors import ConfigError

CLUSTER_SCHEME = "redis+cluster://"
SENTINEL_SCHEME = "redis+sentinel://"
SERVER_SCHEMES = ("redis://", "rediss://", "unix://")
SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")

_URL_LOGIN = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):[^@/\s]*@")
_PASSWORD_OPTION = re.compile(r"(?P<head>[?&][A-Za-z_]*password=)[^&#\s]*", re.IGNORECASE)


@dataclass(frozen=True)
class RedisURL:
    """A parsed ``NOTIFIER_REDIS_URL`` (see the module docstring); :func:`parse` makes one."""

    url: str
    kind: str
    """``server``, ``cluster`` or ``sentinel``."""
    hosts: tuple[tuple[str, int], ...] = ()
    """A cluster's startup nodes or the Sentinels (empty for one server: redis-py reads its URL)."""
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None

    @property
    def credentials(self) -> dict[str, Any]:
        """Keyword arguments that log in to the data nodes (a cluster's nodes, the Sentinels' master)."""
        return _login(self.username, self.password)

    @property
    def sentinel_credentials(self) -> dict[str, Any]:
        """Keyword arguments that log in to the Sentinels themselves."""
        return _login(self.sentinel_username, self.sentinel_password)


def _login(username: str | None, password: str | None) -> dict[str, Any]:
    return {k: v for k, v in (("username", username), ("password", password)) if v is not None}


def parse(url: str) -> RedisURL:
    """Read ``url``; a ConfigError says what the expected form is."""
    if url.startswith(CLUSTER_SCHEME):
        netloc, _, rest = url[len(CLUSTER_SCHEME):].partition("/")
        path, query = _split_query(rest)
        if path or query:
            raise ConfigError(f"{redact(url)}: a cluster URL has no database or options "
                              "(redis+cluster://[user:password@]host:port,host:port)")
        hosts, username, password = _hosts_and_login(netloc, 6379)
        return RedisURL(url, "cluster", hosts, username=username, password=password)
    if url.startswith(SENTINEL_SCHEME):
        netloc, _, rest = url[len(SENTINEL_SCHEME):].partition("/")
        path, query = _split_query(rest)
        service, _, db = path.partition("/")
        if not service:
            raise ConfigError(f"{redact(url)}: name the master, e.g. redis+sentinel://host:26379/mymaster/0")
        if db and not db.isdigit():
            raise ConfigError(f"{redact(url)}: the database after the master name must be a number")
        options = parse_qs(query, keep_blank_values=True)
        unknown = sorted(set(options) - set(SENTINEL_OPTIONS))
        if unknown:
            raise ConfigError(f"{redact(url)}: unknown option(s) {', '.join(unknown)}; a Sentinel URL takes "
                              f"{' and '.join(SENTINEL_OPTIONS)}")
        hosts, username, password = _hosts_and_login(netloc, 26379)
        return RedisURL(url, "sentinel", hosts, service, int(db or 0), username, password,
                        *(options[name][-1] if name in options else None for name in SENTINEL_OPTIONS))
    if url.startswith(SERVER_SCHEMES):
        return RedisURL(url, "server")
    schemes = ", ".join((*SERVER_SCHEMES, CLUSTER_SCHEME, SENTINEL_SCHEME))
    raise ConfigError(f"{redact(url)!r} is not a Redis URL: it must start with one of {schemes}")


def _split_query(rest: str) -> tuple[str, str]:
    path, _, query = rest.partition("?")
    return path.rstrip("/"), query


def _hosts_and_login(netloc: str, default_port: int) -> tuple[tuple[tuple[str, int], ...], str | None, str | None]:
    login, _, hosts = netloc.rpartition("@")
    username = password = None
    if login:
        user, colon, secret = login.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    return tuple(parse_hosts(hosts, default_port)), username, password


def parse_hosts(text: str, default_port: int) -> list[tuple[str, int]]:
    """``host:port,host:port`` (a port may be left out)."""
    hosts = []
    for part in filter(None, text.split(",")):
        host, _, port = part.rpartition(":") if ":" in part else (part, "", "")
        try:
            hosts.append((host or part, int(port) if port else default_port))
        except ValueError:
            raise ConfigError(f"{part!r} is not host:port") from None
    if not hosts:
        raise ConfigError("a cluster or sentinel URL needs at least one host:port")
    return hosts


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``: the one place that hides them.

    Covers the login part (``scheme://user:password@host``) and password options
    (``?password=...``, ``&sentinel_password=...``) of any URL (Redis, AMQP, ...), so it can be applied
    to a single URL, an error message or a log line alike.
    """
    return _PASSWORD_OPTION.sub(r"\g<head>***", _URL_LOGIN.sub(r"\g<head>:***@", text))
