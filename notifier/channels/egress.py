"""Which addresses a user-registered URL may make a worker connect to (server-side request forgery).

A webhook or Apprise URL is chosen by a user, not an operator, yet the request leaves from a worker
inside the operator's network. So unless ``NOTIFIER_WEBHOOK_ALLOW_PRIVATE`` says otherwise, only
public (globally routable, not multicast) addresses are allowed: not loopback (a worker's own Redis
or metrics port), private ranges, link-local (cloud metadata at 169.254.169.254), shared or reserved
ones. The webhook channel checks the address it actually connected to (:func:`guarded_session`),
before a byte is sent, so a host name that resolves, or is re-bound, to a private address is caught
too; the session uses no proxy from the environment (the proxy's address would be checked instead)
and follows no redirect (the caller refuses 3xx). Apprise's plugins open their own connections, so
for them only an address written in the URL can be refused (:func:`check_host`).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from notifier.channels.push import tls_context
from notifier.config import get_settings, is_loopback
from notifier.errors import PermanentError, RetryableError

ALLOW_SETTING = "NOTIFIER_WEBHOOK_ALLOW_PRIVATE"


class RefusedAddress(Exception):
    """A connection reached an address that is not public while private ones are not allowed."""


def is_public(address: str) -> bool:
    """Whether ``address`` (an IP literal) is globally routable unicast; an IPv4-mapped IPv6 address
    counts as the IPv4 address it maps."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_host(host: str | None, allow_private: bool) -> None:
    """Refuse (``ValueError``) a URL host that is ``localhost`` or a literal non-public address, unless
    ``allow_private``; names are left to the connection (:func:`guarded_session`)."""
    if allow_private or not host:
        return
    bare = host.strip("[]").lower()
    if bare == "localhost" or bare.endswith(".localhost"):
        raise ValueError(f"{host} is this machine: set {ALLOW_SETTING}=true to allow private addresses")
    try:
        public = is_public(bare)
    except ValueError:
        return
    if not public:
        raise ValueError(f"{host} is not a public address: set {ALLOW_SETTING}=true to allow private addresses")


def _check_peer(sock: socket.socket, host: str) -> None:
    peer = sock.getpeername()[0]
    if not is_public(peer):
        sock.close()
        raise RefusedAddress(f"{host} resolved to {peer}, which is not a public address; set {ALLOW_SETTING}=true "
                             "to allow private addresses")


class _GuardedHTTP(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _check_peer(sock, self.host)
        return sock


class _GuardedHTTPS(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _check_peer(sock, self.host)
        return sock


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTP


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPS


class _Adapter(HTTPAdapter):
    """requests' adapter with one ``SSLContext``, no retries (Celery owns them) and, unless private
    addresses are allowed, pools whose connections check their peer."""

    def __init__(self, ca_file: str, allow_private: bool) -> None:
        self._context = tls_context(ca_file)
        self._allow_private = allow_private
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **{**kwargs, "ssl_context": self._context})
        if not self._allow_private:
            self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


def guarded_session(ca_file: str, allow_private: bool) -> requests.Session:
    """A session trusting the system CAs plus ``ca_file``, ignoring proxy variables, whose connections
    raise :class:`RefusedAddress` on a non-public peer unless ``allow_private``."""
    session = requests.Session()
    session.trust_env = False
    adapter = _Adapter(ca_file, allow_private)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def check_url(channel: str, url: str, hosts: Sequence[str] = (), path: str = "") -> None:
    """Refuse (``ValueError``) a user's URL for ``channel`` that is not https (plain http only to a
    loopback host, for development and tests), carries a user or password, or, when ``hosts`` are
    given, is on none of them (or their subdomains) or outside ``path``, or names a non-public address
    unless ``NOTIFIER_WEBHOOK_ALLOW_PRIVATE`` (:func:`check_host`): the worker posts to what users
    register."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host or parts.username or parts.password:
        raise ValueError(f"a {channel} URL has a host and no user or password, not {url[:80]!r}")
    check_host(host, get_settings().webhook_allow_private)
    if is_loopback(host):
        if parts.scheme not in ("https", "http"):
            raise ValueError(f"a {channel} URL is https, not {url[:80]!r}")
        return
    if parts.scheme != "https":
        raise ValueError(f"a {channel} URL must use https (plain http only to a loopback host), "
                         f"not {url[:80]!r}")
    if hosts and not any(host == h or host.endswith("." + h) for h in hosts):
        raise ValueError(f"a {channel} URL is on {' or '.join(hosts)}, not {host!r}")
    if path and not parts.path.startswith(path):
        raise ValueError(f"a {channel} URL's path starts with {path}, not {parts.path[:80]!r}")


def post(session: requests.Session, url: str, body: bytes, where: str, timeout: float,
         headers: dict[str, str] | None = None, params: dict[str, str] | None = None) -> requests.Response:
    """POST ``body`` (JSON) to a user's URL, following no redirect: a refused address or a refused TLS
    certificate is permanent, any other failure to connect retryable. ``where`` names the receiver
    in errors (its origin or host, never a webhook's secret path)."""
    try:
        return session.post(url, data=body, params=params, timeout=timeout, allow_redirects=False,
                            headers={"Content-Type": "application/json", **(headers or {})})
    except RefusedAddress as exc:
        raise PermanentError(f"{where} refused: {exc}") from None
    except requests.exceptions.SSLError as exc:
        raise PermanentError(f"TLS with {where} failed ({type(exc).__name__}): its certificate must be valid "
                             "(a private CA: NOTIFIER_CA_FILE)") from None
    except requests.RequestException as exc:
        raise RetryableError(f"{where} unreachable ({type(exc).__name__})") from None
