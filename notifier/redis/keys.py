"""Every Redis key name notifier uses, in one place.

Per-user keys carry the user id in a hash tag (``notifier:{user123}:inbox``) so that all of a user's
keys, and every Lua script that touches them, stay in one Redis Cluster slot. Two different user ids
never produce the same key, whatever characters they hold: a suffix contains ``}`` only in the local
part of a receipt's email address, and ``models._EMAIL`` keeps braces out of the domain, so no suffix
can end like ``}:inbox`` and spell another user's key.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass


@functools.lru_cache(maxsize=4096)
def _digest_of(text: str) -> str:
    """SHA-1 hex of ``text``: names taken from notifications (digest keys, run ids) enter key names as a
    fixed-length hex string, so they cannot hold ``}`` or ``:`` and no two of them spell one key. Cached:
    a broadcast names the same digest and run for each of its recipients."""
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix (``NOTIFIER_KEY_PREFIX``; tests use one each)."""

    prefix: str = "notifier"

    def _user(self, user_id: str, suffix: str) -> str:
        return f"{self.prefix}:{{{user_id}}}:{suffix}"

    # Per user ---------------------------------------------------------------------------------
    def inbox(self, user_id: str) -> str:
        """Stream of inbox entries (fields ``nid`` and ``n``, the notification JSON)."""
        return self._user(user_id, "inbox")

    def inbox_ids(self, user_id: str) -> str:
        """Hash notification id -> stream entry id: de-duplicates delivery, finds entries by id."""
        return self._user(user_id, "ids")

    def inbox_epoch(self, user_id: str) -> str:
        """Hash of the inbox stream's history (``notifier.state.inbox.Position``): ``epoch`` (random, new
        whenever the stream is created afresh), ``since`` (its oldest entry id when the epoch was given)
        and ``trimmed`` (the newest entry id the cap removed), so a resuming client learns whether it
        missed anything."""
        return self._user(user_id, "epoch")

    def unread(self, user_id: str) -> str:
        """Set of unread notification ids; its size is the unread count."""
        return self._user(user_id, "unread")

    def seen_upto(self, user_id: str) -> str:
        """Hash: the entry id up to which everything counts as seen (``upto``, set by ``mark all seen``),
        the stream's entries-added then (``added``) and the entries after it deleted since (``removed``)."""
        return self._user(user_id, "seen_upto")

    def seen(self, user_id: str) -> str:
        """Set of notification ids seen one by one, newer than :meth:`seen_upto`."""
        return self._user(user_id, "seen")

    def archived(self, user_id: str) -> str:
        """Set of archived notification ids (out of the default list)."""
        return self._user(user_id, "archived")

    def snoozed(self, user_id: str) -> str:
        """Sorted set: snoozed notification id -> when it comes back (epoch seconds)."""
        return self._user(user_id, "snoozed")

    def interacted(self, user_id: str) -> str:
        """Set of notification ids the user took an action on."""
        return self._user(user_id, "interacted")

    def live(self, user_id: str) -> str:
        """Pub/Sub channel for live delivery to the user's open connections."""
        return self._user(user_id, "live")

    def preferences(self, user_id: str) -> str:
        """String: the user's preferences as JSON."""
        return self._user(user_id, "prefs")

    def rate(self, user_id: str, channel: str) -> str:
        """Sorted set of send times in the current window, one per channel (and ``api`` for requests)."""
        return self._user(user_id, f"rate:{channel}")

    def devices(self, user_id: str) -> str:
        """Hash device id -> device JSON. Device ids start with the platform (``fcm-…``), so the
        router learns which push channels a user has from HKEYS alone."""
        return self._user(user_id, "devices")

    def receipt(self, user_id: str, channel: str, notification_id: str, target: str) -> str:
        """Marks one delivery (notification, channel, target) as claimed or done."""
        return self._user(user_id, f"receipt:{channel}:{notification_id}:{target}")

    def run(self, user_id: str, run_id: str) -> str:
        """Hash: one workflow run's state (``notifier.workflows.runs``); the run id is the notification's."""
        return self._user(user_id, f"run:{run_id}")

    def run_notification(self, notification_id: str) -> str:
        """String: the notification JSON of the runs with this id, kept once however many users
        (a broadcast's 100,000 runs share it)."""
        return f"{self.prefix}:runn:{{{notification_id}}}"

    def runs(self, user_id: str) -> str:
        """Sorted set of the user's run ids by start time (``notifier runs list USER``)."""
        return self._user(user_id, "runs")

    def digest(self, user_id: str, workflow: str, key: str) -> str:
        """Hash of the open digest of (user, workflow, digest key): its id, due time and first event. The
        digest's other keys are this name with a suffix (:meth:`digest_part`). Workflow and key enter
        the name as one SHA-1 over both, the workflow length first, so ("a:b", "c") and ("a", "b:c")
        differ."""
        return self._user(user_id, f"digest:{_digest_of(f'{len(workflow)}:{workflow}:{key}')}")

    @staticmethod
    def digest_part(digest: str, part: str, name: str | None = None) -> str:
        """A key of the digest named by :meth:`digest`: ``events`` (list of the open digest's later events:
        its count is one more than their number),
        ``sealed`` (hash digest id -> events of the digests that filled up, until their owner closes
        them), ``closed`` with the digest id (the closed digest's events, kept for a repeated close),
        ``run`` with a run id (what that run's join returned, for a redelivered join)."""
        return f"{digest}:{part}" if name is None else f"{digest}:{part}:{_digest_of(name)}"

    # Global -----------------------------------------------------------------------------------
    def cancel(self, cancel_key: str) -> str:
        """Set of ``[user, run id]`` JSON pairs started with this ``cancel_key``."""
        return f"{self.prefix}:cancel:{{{cancel_key}}}"

    def cancelled(self, cancel_key: str) -> str:
        """String: when ``cancel_key`` was last cancelled (epoch s), so a send made before the cancel
        that had not started its run yet starts it cancelled."""
        return f"{self.prefix}:cancelled:{{{cancel_key}}}"

    def idempotency(self, key: str) -> str:
        """String: the notification id that first used this idempotency key."""
        return f"{self.prefix}:idem:{{{key}}}"

    def users(self) -> str:
        """Set of every user that was ever sent to or configured (``broadcast`` with no list)."""
        return f"{self.prefix}:users"

    def group(self, group_id: str) -> str:
        """Set of the group's user ids."""
        return f"{self.prefix}:group:{{{group_id}}}"

    def groups(self) -> str:
        """Set of group ids that have members."""
        return f"{self.prefix}:groups"

    def dead_letters(self) -> str:
        """Stream of dead-lettered deliveries (entry id = dead letter id)."""
        return f"{self.prefix}:dlq"

    def schedule(self) -> str:
        """Sorted set of deferred task messages, scored by due time (epoch seconds)."""
        return f"{self.prefix}:schedule"

    def sms_status(self, provider: str, message_id: str) -> str:
        """Hash: one SMS's latest delivery state as its provider reported it (``notifier.state.sms_status``).
        Message ids are the provider's own alphanumeric ids; the gateway refuses callbacks with others."""
        return f"{self.prefix}:sms:{provider}:{{{message_id}}}"

    def events(self) -> str:
        """Stream of delivery-event batches waiting for the drain task (``notifier.deliverylog.events``);
        a consumer group on it tracks what was written to the database."""
        return f"{self.prefix}:{{events}}:log"

    def events_dropped(self) -> str:
        """Counter of delivery events dropped because the buffer stream was full (same slot as it)."""
        return f"{self.prefix}:{{events}}:dropped"

    def events_outbox(self) -> str:
        """Stream of written events that event webhooks still have to be sent for (same slot as the
        buffer, so an entry moves from one to the other in one transaction)."""
        return f"{self.prefix}:{{events}}:outbox"

    def events_drain_lock(self) -> str:
        """Held by the one drain task writing the events stream to the database right now."""
        return f"{self.prefix}:{{events}}:drain"

    def periodic(self, job: str) -> str:
        """Set, with an expiry of the job's interval, by the worker that sends a periodic job
        (``notifier.pipeline.periodic``): one send per interval across every worker."""
        return f"{self.prefix}:periodic:{job}"

    def event_webhooks(self) -> str:
        """Set of the event webhook subscriptions' ids (``notifier.deliverylog.subscriptions``); in the
        ``{webhooks}`` slot with the subscriptions, so adding or removing one is one transaction."""
        return f"{self.prefix}:{{webhooks}}:ids"

    def event_webhook(self, subscription_id: str) -> str:
        """Hash: one event webhook subscription (URL, kinds, secret, state, first failure time)."""
        return f"{self.prefix}:{{webhooks}}:sub:{subscription_id}"

    def scheduler_lock(self) -> str:
        """Held by the one scheduler loop releasing due messages right now."""
        return f"{self.prefix}:schedule:lock"
