"""Test support: a real 3-master Redis Cluster and a Sentinel-watched master, started on 127.0.0.1.

Both are plain ``redis-server`` processes in a temporary directory, killed and removed afterwards, so
the tests exercise the real protocols (MOVED, sharded Pub/Sub, ``SENTINEL get-master-addr-by-name``).
Test modules import the fixtures they need; each module gets its own servers.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import redis

from tests.support.helpers import wait_for
from tests.support.processes import free_port


def cluster_port() -> int:
    """A port that, with its cluster bus port (+10000), is free and below the kernel's ephemeral range
    (32768 and up), so no outgoing connection can be holding either when redis-server binds them."""
    while True:
        port = random.randrange(10000, 22000)
        if _free(port) and _free(port + 10000):
            return port


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _tools() -> tuple[str, str]:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    assert server and cli, "redis-server and redis-cli are installed by scripts/services.sh"
    return server, cli


class LocalCluster:
    """A Redis Cluster of ``masters`` primaries (no replicas), slots spread evenly by ``redis-cli``;
    with ``password``, every node requires it (``requirepass``) and the URL carries it."""

    def __init__(self, masters: int = 3, password: str | None = None) -> None:
        self.ports = [cluster_port() for _ in range(masters)]
        self.password = password
        login = f":{quote(password, safe='')}@" if password else ""
        self.url = f"redis+cluster://{login}" + ",".join(f"127.0.0.1:{p}" for p in self.ports)
        self._dir = tempfile.mkdtemp(prefix="notifier-cluster-")
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> LocalCluster:
        server, cli = _tools()
        auth = ["--requirepass", self.password, "--masterauth", self.password] if self.password else []
        self._procs = [subprocess.Popen(
            [server, "--port", str(p), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", f"nodes-{p}.conf", "--save", "", "--appendonly", "no", "--dir", self._dir,
             *auth], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for p in self.ports]
        cli_auth = ["--no-auth-warning", "-a", self.password] if self.password else []
        for p in self.ports:
            wait_for(lambda: subprocess.run([cli, *cli_auth, "-p", str(p), "ping"], capture_output=True, text=True)
                     .stdout.strip() == "PONG", message=f"node {p}")
        created = subprocess.run([cli, *cli_auth, "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.ports],
                                  "--cluster-replicas", "0", "--cluster-yes"], capture_output=True, text=True,
                                 timeout=60)
        assert created.returncode == 0, created.stdout + created.stderr
        for p in self.ports:
            wait_for(lambda: "cluster_state:ok" in subprocess.run([cli, *cli_auth, "-p", str(p), "cluster", "info"],
                                                                  capture_output=True, text=True).stdout,
                     timeout=30, message="cluster_state:ok")
        return self

    def node(self, port: int) -> redis.Redis:
        """A plain client for one node (``CLIENT LIST``, ``CLUSTER`` commands)."""
        return redis.Redis(port=port, password=self.password, decode_responses=True)

    def move_slot(self, slot: int, source: int, target: int) -> None:
        """Reshard one slot and its keys from port ``source`` to port ``target``, as ``redis-cli`` does."""
        src, dst = self.node(source), self.node(target)
        src_id, dst_id = src.execute_command("CLUSTER MYID"), dst.execute_command("CLUSTER MYID")
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
        while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
        for port in (target, source, *[p for p in self.ports if p not in (source, target)]):
            self.node(port).execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)

    def stop(self) -> None:
        for proc in self._procs:
            proc.kill()
            proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)


class LocalSentinel:
    """A master, optionally a replica of it, and one Sentinel that monitors them as ``service`` (quorum 1).
    With ``password`` the master (and replica) require it; with ``sentinel_password`` the Sentinel does."""

    service = "notifier-master"

    def __init__(self, replica: bool = False, password: str | None = None,
                 sentinel_password: str | None = None) -> None:
        self.master_port, self.sentinel_port = free_port(), free_port()
        self.replica_port = free_port() if replica else None
        self.password, self.sentinel_password = password, sentinel_password
        login = f":{quote(password, safe='')}@" if password else ""
        query = f"?sentinel_password={quote(sentinel_password, safe='')}" if sentinel_password else ""
        self.url = f"redis+sentinel://{login}127.0.0.1:{self.sentinel_port}/{self.service}/0{query}"
        self._dir = tempfile.mkdtemp(prefix="notifier-sentinel-")
        self._procs: list[subprocess.Popen[bytes]] = []

    def _server(self, port: int, *args: str) -> None:
        server, _ = _tools()
        auth = ["--requirepass", self.password, "--masterauth", self.password] if self.password else []
        self._procs.append(subprocess.Popen(
            [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self._dir, "--dbfilename", f"dump-{port}.rdb", *auth, *args], stdout=subprocess.DEVNULL))

    def start(self) -> LocalSentinel:
        server, _ = _tools()
        self._server(self.master_port, "--repl-diskless-sync-delay", "0")
        if self.replica_port is not None:
            self._server(self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port))
            wait_for(lambda: self._info(self.replica_port).get("master_link_status") == "up", timeout=20,
                     message="the replica to sync")
        conf = f"{self._dir}/sentinel.conf"
        with open(conf, "w") as fh:
            fh.write(f"port {self.sentinel_port}\nbind 127.0.0.1\n"
                     f"sentinel monitor {self.service} 127.0.0.1 {self.master_port} 1\n"
                     f"sentinel down-after-milliseconds {self.service} 500\n"
                     + (f"sentinel auth-pass {self.service} {self.password}\n" if self.password else "")
                     + (f"requirepass {self.sentinel_password}\n" if self.sentinel_password else ""))
        self._procs.append(subprocess.Popen([server, conf, "--sentinel"], stdout=subprocess.DEVNULL))
        wait_for(self._ready, timeout=20, message="sentinel to report the master (and its replica)")
        return self

    def _info(self, port: int) -> dict[str, object]:
        try:
            return dict(redis.Redis(port=port, password=self.password, socket_timeout=1).info("replication"))
        except redis.RedisError:
            return {}

    def _sentinel(self) -> redis.Redis:
        return redis.Redis(port=self.sentinel_port, password=self.sentinel_password, socket_timeout=1,
                           decode_responses=True)

    def _ready(self) -> bool:
        try:
            if not (self._sentinel().sentinel_get_master_addr_by_name(self.service) and self.master().ping()):
                return False
            if self.replica_port is None:
                return True
            replicas = self._sentinel().sentinel_slaves(self.service)
            return any(r["port"] == self.replica_port and not r["is_disconnected"] for r in replicas)
        except redis.RedisError:
            return False

    def master_address(self) -> tuple[str, int]:
        host, port = self._sentinel().sentinel_get_master_addr_by_name(self.service)
        return host, int(port)

    def master(self) -> redis.Redis:
        """The current master (after a failover, the promoted replica)."""
        _, port = self.master_address()
        return redis.Redis(port=port, password=self.password, decode_responses=True)

    def kill_master(self) -> None:
        """Kill the master; Sentinel sees it down after 500 ms and promotes the replica. Waits for that."""
        assert self.replica_port is not None, "start with replica=True"
        self._procs[0].kill()
        self._procs[0].wait()
        wait_for(lambda: self.master_address()[1] == self.replica_port
                 and self._info(self.replica_port).get("role") == "master", timeout=30, message="the failover")

    def stop(self) -> None:
        for proc in self._procs:
            proc.kill()
            proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[LocalCluster]:
    cluster = LocalCluster()
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def cluster_url(redis_cluster: LocalCluster) -> str:
    """``redis+cluster://`` URL of this module's cluster (every node as a startup node)."""
    return redis_cluster.url


@pytest.fixture
def redis_sentinel() -> Iterator[LocalSentinel]:
    sentinel = LocalSentinel()
    try:
        yield sentinel.start()
    finally:
        sentinel.stop()
