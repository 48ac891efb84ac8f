"""Events written with the change they announce, in the same single-document update.

There are no multi-document transactions on our MongoDB-protocol server, so a command that
changes a callback adds the lifecycle event(s) announcing it to the document's own ``outbox``
array in the *same* atomic update (:func:`with_outbox`). The writer then publishes them at once and
removes them (:meth:`OutboxRelay.flush`); if Kafka or the process fails in between, the events stay
in the document and the relay loop (:meth:`OutboxRelay.run`) publishes them later. An event may
therefore be published twice, never lost and never without its change; consumers de-duplicate
by ``event_id``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

import structlog
from faststream.kafka import KafkaBroker
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from callback_shared.kafka import publish_all
from callback_shared.models import Event, utcnow
from callback_shared.mongo import Document
from callback_shared.runtime import keep_running

OUTBOX = "outbox"
#: Set while a document's outbox holds events: the relay's (sparse) index key.
OUTBOX_SINCE = "outbox_since"

#: How old an unpublished outbox entry must be before the relay takes it over from its writer
#: (a bulk cancel flushes a whole batch of 500 at once, which can take many seconds here).
RELAY_AFTER = timedelta(seconds=30)

log = structlog.get_logger(__name__)


def outbox_entry(topic: str, event: Event) -> Document:
    return {
        "event_id": event.event_id,
        "topic": topic,
        "key": str(event.callback_id),
        "payload": event.model_dump_json(),
    }


def with_outbox(update: Document, entries: Iterable[Document]) -> Document:
    """``update`` plus pushing ``entries`` to the document's outbox, in one update document."""
    entries = list(entries)
    if not entries:
        return update
    merged = {op: dict(fields) for op, fields in update.items()}
    merged.setdefault("$push", {})[OUTBOX] = {"$each": entries}
    merged.setdefault("$set", {}).setdefault(OUTBOX_SINCE, utcnow())
    return merged


class OutboxRelay:
    """Publishes outbox events to Kafka and removes them once the broker acknowledged them."""

    def __init__(self, collection: AsyncCollection[Document], broker: KafkaBroker) -> None:
        self.collection = collection
        self.broker = broker

    async def publish(self, entries: Iterable[Document]) -> None:
        """Publish and wait for every acknowledgement (acks=all)."""
        await publish_all(
            self.broker,
            (
                (entry["topic"], entry["payload"].encode(), entry["key"].encode())
                for entry in entries
            ),
        )

    async def flush(self, documents: Iterable[Document]) -> None:
        """Publish the outbox entries of these (freshly written) documents, then remove them
        from their outboxes, for every document in one round trip (two when another writer
        added events meanwhile)."""
        documents = [doc for doc in documents if doc.get(OUTBOX)]
        if not documents:
            return
        await self.publish(entry for doc in documents for entry in doc[OUTBOX])
        # usually nobody added events meanwhile: then one update empties each outbox
        emptied_whole = [
            UpdateOne(
                {
                    "_id": doc["_id"],
                    OUTBOX: {"$size": len(doc[OUTBOX])},
                    f"{OUTBOX}.event_id": {"$all": [e["event_id"] for e in doc[OUTBOX]]},
                },
                {"$unset": {OUTBOX: "", OUTBOX_SINCE: ""}},
            )
            for doc in documents
        ]
        result = await self.collection.bulk_write(emptied_whole, ordered=False)
        if result.matched_count == len(documents):
            return
        published = [
            UpdateOne(
                {"_id": doc["_id"]},
                {"$pull": {OUTBOX: {"event_id": {"$in": [e["event_id"] for e in doc[OUTBOX]]}}}},
            )
            for doc in documents
        ]
        emptied = [
            UpdateOne({"_id": doc["_id"], OUTBOX: {"$size": 0}}, {"$unset": {OUTBOX_SINCE: ""}})
            for doc in documents
        ]
        await self.collection.bulk_write(published + emptied, ordered=True)

    async def relay_pending(self, older_than: timedelta, limit: int = 500) -> int:
        """Publish what writers left behind (crash, Kafka down); returns documents relayed."""
        cutoff = utcnow() - older_than
        cursor = self.collection.find(
            {OUTBOX_SINCE: {"$lte": cutoff}}, {OUTBOX: 1}, limit=limit
        ).sort(OUTBOX_SINCE, 1)
        documents = await cursor.to_list()
        await self.flush(documents)
        return len(documents)

    async def run(self, interval: float = 1.0, older_than: timedelta = RELAY_AFTER) -> None:
        """The relay loop: never gives up; Kafka or MongoDB errors are logged and retried."""

        async def relay() -> None:
            if relayed := await self.relay_pending(older_than):
                log.warning("relayed events left in outboxes", documents=relayed)

        await keep_running(relay, interval, "outbox relay failed; will retry")
