"""The Redis broker's task queues as Redis Streams read by one consumer group: no instant loses a message.

kombu's Redis transport takes a message off its list (``BRPOP``) and records it as unacknowledged in a
second step; a worker killed or frozen between the two loses the message for good (celery/celery#7950),
on every hop. Here each of notifier's task queues is a stream read by the consumer group ``notifier``:
``XREADGROUP`` hands an entry to a named consumer and records it in the group's pending list in the same
command, so at every instant an entry is either waiting in the stream or pending for one consumer, until
its ack removes it (``XACK`` + ``XDEL``).

- A live worker refreshes the idle time of every entry it holds (prefetched, waiting for a countdown or
  running) each ``unacked_restore_interval`` seconds (``XCLAIM ... JUSTID``), so a long provider batch is
  never taken from a worker that is still running it.
- Every worker takes back entries that have been idle longer than the visibility timeout, the holdings of
  a killed or frozen worker (``XAUTOCLAIM``), and adds them again as new entries marked redelivered.
- Queues that are not notifier's (reply queues of remote control) and fanout (control, events) keep
  kombu's own list and Pub/Sub implementation.

Selected by ``broker_transport`` in ``notifier/pipeline/celeryconfig.py`` for a Redis broker.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from time import monotonic
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import dumps, loads

from notifier.pipeline.queues import QUEUES

GROUP = "notifier"
"""The one consumer group of every task stream: each entry goes to one worker."""

STREAM_FIELD = b"m"
"""The entry field that carries kombu's message (its JSON)."""

_ENTRY = "notifier_stream_entry"
"""Where a delivered message keeps ``[stream key, entry id]`` in its delivery info, for its ack."""


def stream_key(queue: str) -> str:
    """The stream of a task queue: a key of its own, so it never meets a list from kombu's transport."""
    return f"_notifier.stream.{queue}"


def _as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class QoS(kombu_redis.QoS):
    """Acks and restores: pending-list operations for stream entries, kombu's own for list queues."""

    def append(self, message: Any, delivery_tag: str) -> None:
        if _ENTRY not in message.delivery_info:
            super().append(message, delivery_tag)
            return
        virtual.QoS.append(self, message, delivery_tag)

    def _entry(self, delivery_tag: str) -> tuple[str, str] | None:
        message = self._delivered.get(delivery_tag)
        entry = message.delivery_info.get(_ENTRY) if message is not None else None
        return (entry[0], entry[1]) if entry else None

    def ack(self, delivery_tag: str) -> None:
        entry = self._entry(delivery_tag)
        if entry is None:
            super().ack(delivery_tag)
            return
        with self.channel.conn_or_acquire() as client:
            client.pipeline(transaction=True).xack(entry[0], GROUP, entry[1]).xdel(*entry).execute()
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        entry = self._entry(delivery_tag)
        if entry is None:
            super().reject(delivery_tag, requeue)
            return
        message = self._delivered[delivery_tag]
        with self.channel.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=True)
            if requeue:
                pipe.xadd(entry[0], {STREAM_FIELD: dumps(_redelivered(message._raw))})
            pipe.xack(entry[0], GROUP, entry[1]).xdel(*entry).execute()
        virtual.QoS.ack(self, delivery_tag)

    def restore_unacked(self, client: Any = None) -> None:
        """At shutdown: what this worker holds but did not run goes back to its stream, in one transaction."""
        for tag in list(self._delivered):
            if self._entry(tag) is not None:
                self.reject(tag, requeue=True)
            else:
                self.restore_by_tag(tag, client=client)
        self._delivered.clear()

    def restore_visible(self, start: int = 0, num: int = 10, interval: int = 10) -> None:
        """kombu's restore for list queues, then: refresh what this worker holds, take back what a dead one held."""
        super().restore_visible(start, num, interval)
        held: dict[str, list[str]] = {}
        for tag in list(self._delivered):
            entry = self._entry(tag)
            if entry is not None:
                held.setdefault(entry[0], []).append(entry[1])
        with self.channel.conn_or_acquire() as client:
            for key, ids in held.items():
                client.xclaim(key, GROUP, self.channel.consumer_name, 0, ids, justid=True)
            for queue in self.channel.stream_queues():
                self._reclaim(client, stream_key(queue))

    def _reclaim(self, client: Any, key: str) -> None:
        """Entries idle past the visibility timeout go back into the stream as new, redelivered ones."""
        idle_ms = int(self.visibility_timeout * 1000)
        start = "0-0"
        while True:
            reply = client.xautoclaim(key, GROUP, self.channel.consumer_name, idle_ms, start, count=100)
            start, entries = _as_text(reply[0]), reply[1]
            if entries:
                pipe = client.pipeline(transaction=True)
                for entry_id, fields in entries:
                    if fields and STREAM_FIELD in fields:
                        pipe.xadd(key, {STREAM_FIELD: dumps(_redelivered(loads(fields[STREAM_FIELD])))})
                    pipe.xack(key, GROUP, entry_id).xdel(key, entry_id)
                pipe.execute()
                kombu_redis.logger.warning("took back %d message(s) of %s that a lost worker held",
                                           len(entries), key)
            if start == "0-0":
                return


def _redelivered(payload: dict[str, Any]) -> dict[str, Any]:
    """The message as it goes back to its stream: marked redelivered, without its old entry id."""
    payload.get("headers", {})["redelivered"] = True
    info = payload.get("properties", {}).get("delivery_info", {})
    info["redelivered"] = True
    info.pop(_ENTRY, None)
    return payload


class StreamsChannel(kombu_redis.Channel):
    """kombu's Redis channel (a broker connection's session, not a notification channel) with notifier's
    task queues kept in streams."""

    QoS = QoS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._commands: tuple[Any, Any] | None = None
        super().__init__(*args, **kwargs)
        self.consumer_name = f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self._stream_poll = False

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        """The client for a command outside the poll: one per connection pool, where kombu makes a new
        redis-py client for every command (an ack, a ``basic_get``), ~130 µs of CPU each. A client holds
        no connection of its own (each command takes one from the pool), so one serves them all; a new
        pool (after a reconnect) gets a new one."""
        if client:
            yield client
            return
        pool = self.pool
        if self._commands is None or self._commands[0] is not pool:
            self._commands = (pool, self._create_client())
        yield self._commands[1]

    @staticmethod
    def is_stream(queue: str) -> bool:
        return queue in QUEUES

    def stream_queues(self) -> list[str]:
        return [q for q in self.active_queues if self.is_stream(q)]

    def _new_queue(self, queue: str, auto_delete: bool = False, **kwargs: Any) -> None:
        if not self.is_stream(queue):
            super()._new_queue(queue, auto_delete, **kwargs)
            return
        with self.conn_or_acquire() as client:
            try:
                client.xgroup_create(stream_key(queue), GROUP, id="0", mkstream=True)
            except self.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        if not self.is_stream(queue):
            return bool(super()._has_queue(queue, **kwargs))
        with self.conn_or_acquire() as client:
            return bool(client.exists(stream_key(queue)))

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        if not self.is_stream(queue):
            super()._put(queue, message, **kwargs)
            return
        fields = {STREAM_FIELD: dumps(message)}
        batch = kwargs.pop("_publish_batch", None)
        if batch is not None:
            batch.add("xadd", stream_key(queue), fields)
            return
        with self.conn_or_acquire() as client:
            client.xadd(stream_key(queue), fields)

    def _get(self, queue: str, timeout: Any = None) -> Any:
        if not self.is_stream(queue):
            return super()._get(queue)
        with self.conn_or_acquire() as client:
            reply = client.xreadgroup(GROUP, self.consumer_name, {stream_key(queue): ">"}, count=1)
        messages = self._messages(reply)
        if not messages:
            raise virtual.Empty()
        return messages[0][1]

    def _size(self, queue: str) -> int:
        if not self.is_stream(queue):
            return int(super()._size(queue))
        with self.conn_or_acquire() as client:
            return waiting(client, queue)

    def _purge(self, queue: str) -> int:
        if not self.is_stream(queue):
            return int(super()._purge(queue))
        size = self._size(queue)
        with self.conn_or_acquire() as client:
            client.delete(stream_key(queue))
        self._new_queue(queue)
        return size

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        if self.is_stream(queue):
            with self.conn_or_acquire() as client:
                client.delete(stream_key(queue))
        super()._delete(queue, *args, **kwargs)

    def _brpop_start(self, timeout: float | None = None) -> None:
        queues = self._queue_cycle.consume(len(self.active_queues))
        streams = [q for q in queues if self.is_stream(q)]
        if not streams:
            self._stream_poll = False
            super()._brpop_start(timeout)
            return
        if timeout is None:
            timeout = self.brpop_timeout
        keys = [stream_key(q) for q in streams]
        self._in_poll = self.client.connection
        self._brpop_sent_at = monotonic()  # type: ignore[assignment]  # kombu declares it None on the class
        self._stream_poll = True
        self.client.connection.send_command(
            "XREADGROUP", "GROUP", GROUP, self.consumer_name, "COUNT", 1, "BLOCK", int((timeout or 0) * 1000),
            "STREAMS", *keys, *([">"] * len(keys)))

    def _brpop_read(self, **options: Any) -> bool:
        if not self._stream_poll:
            return bool(super()._brpop_read(**options))
        try:
            try:
                reply = self.client.parse_response(self.client.connection, "XREADGROUP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            messages = self._messages(reply)
            if not messages:
                raise virtual.Empty()
            for queue, payload in messages:  # COUNT 1 is per stream: one read may bring one of each
                self._queue_cycle.rotate(queue)
                self.connection._deliver(payload, queue)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]  # kombu declares it False but sets None, as here
            self._stream_poll = False
            self._flush_brpop_reauth()

    def _messages(self, reply: Any) -> list[tuple[str, dict[str, Any]]]:
        """``(queue, kombu message)`` pairs from an ``XREADGROUP`` reply (none when it timed out empty)."""
        messages: list[tuple[str, dict[str, Any]]] = []
        if not reply:
            return messages
        streams = list(reply.items()) if isinstance(reply, dict) else [(s[0], s[1]) for s in reply]
        for key, entries in streams:
            key_text = _as_text(key)
            for entry in entries or []:
                entry_id, fields = entry[0], entry[1]
                if not fields or STREAM_FIELD not in fields:  # not a message of ours: drop the entry
                    with self.conn_or_acquire() as client:
                        client.pipeline().xack(key_text, GROUP, entry_id).xdel(key_text, entry_id).execute()
                    continue
                payload = loads(fields[STREAM_FIELD])
                payload.setdefault("properties", {}).setdefault("delivery_info", {})[_ENTRY] = [
                    key_text, _as_text(entry_id)]
                messages.append((key_text[len(stream_key("")):], payload))
        return messages


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`StreamsChannel`."""

    Channel = StreamsChannel  # the attribute kombu looks up


def waiting(client: Any, queue: str) -> int:
    """Messages in a task queue that no worker has taken yet (a Redis broker's own client)."""
    key = stream_key(queue)
    try:
        length, pending = client.pipeline(transaction=True).xlen(key).xpending(key, GROUP).execute()
    except kombu_redis.redis.ResponseError:  # no stream or no group yet
        return 0
    return max(0, int(length) - int(pending["pending"]))


def in_flight(client: Any, queues: tuple[str, ...] = QUEUES) -> int:
    """Messages workers have taken but not yet acknowledged, over ``queues``."""
    total = 0
    for queue in queues:
        try:
            total += int(client.xpending(stream_key(queue), GROUP)["pending"])
        except kombu_redis.redis.ResponseError:
            continue
    return total
