"""Events written with the change they announce, in the same single-document update.

There are no multi-document transactions on our MongoDB-protocol server, so a command that
changes a callback adds the lifecycle event(s) announcing it to the document's own ``outbox``
array in the *same* atomic update (:func:`with_outbox`). The writer then publishes them at once and
removes them (:meth:`OutboxRelay.flush`); if Kafka or the process fails in between, the events stay
in the document and the relay loop (:meth:`OutboxRelay.run`) publishes them later. An event may
therefore be published twice, never lost and never without its change; consumers de-duplicate
by ``event_id``.

One relay serves one collection's outbox: the callbacks' (``outbox``, with ``outbox_since`` set
while it holds events: the relay's sparse index key), or another collection's
outbox field (admin-api's bulk cancel jobs), whose events may need a check that their change
was made before they are published (``happened``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta

import structlog
from faststream.kafka import KafkaBroker
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from callback_shared.kafka import publish_all
from callback_shared.models import Event, utcnow
from callback_shared.mongo import Document
from callback_shared.record import F, OutboxF
from callback_shared.runtime import keep_running

#: How old an unpublished outbox entry must be before the relay takes it over from its writer
#: (a bulk cancel flushes a whole batch of 500 at once, which can take many seconds here).
RELAY_AFTER = timedelta(seconds=30)

#: Which outbox entries announce a change that was made: given documents a relay found with
#: events left behind, the same documents holding only those entries (the others are removed
#: unpublished: their change never happened).
Happened = Callable[[list[Document]], Awaitable[list[Document]]]

log = structlog.get_logger(__name__)


def outbox_entry(topic: str, event: Event) -> Document:
    return {
        OutboxF.EVENT_ID: event.event_id,
        OutboxF.TOPIC: topic,
        OutboxF.KEY: str(event.callback_id),
        OutboxF.PAYLOAD: event.model_dump_json(),
    }


def with_outbox(
    update: Document,
    entries: Iterable[Document],
    *,
    field: str = F.OUTBOX,
    since: str = F.OUTBOX_SINCE,
) -> Document:
    """``update`` plus pushing ``entries`` to the document's outbox (``field``, and ``since``
    set when it first holds events), in one update document."""
    entries = list(entries)
    if not entries:
        return update
    merged = {op: dict(fields) for op, fields in update.items()}
    merged.setdefault("$push", {})[field] = {"$each": entries}
    merged.setdefault("$set", {}).setdefault(since, utcnow())
    return merged


class OutboxRelay:
    """Publishes the events of one collection's outbox field to Kafka and removes them once the
    broker acknowledged them. ``happened`` (default: every entry) picks, among the events left
    behind, those to publish (:meth:`relay_pending`)."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        broker: KafkaBroker,
        *,
        field: str = F.OUTBOX,
        since: str = F.OUTBOX_SINCE,
        happened: Happened | None = None,
    ) -> None:
        self.collection = collection
        self.broker = broker
        self.field = field
        self.since = since
        self.happened = happened

    async def publish(self, entries: Iterable[Document]) -> None:
        """Publish and wait for every acknowledgement (acks=all)."""
        await publish_all(
            self.broker,
            (
                (entry[OutboxF.TOPIC], entry[OutboxF.PAYLOAD].encode(), entry[OutboxF.KEY].encode())
                for entry in entries
            ),
        )

    async def flush(self, documents: Iterable[Document]) -> None:
        """Publish the outbox entries of these (freshly written) documents, then remove them
        from their outboxes (:meth:`settle`)."""
        documents = [doc for doc in documents if doc.get(self.field)]
        if not documents:
            return
        await self.publish(entry for doc in documents for entry in doc[self.field])
        await self.settle(documents)

    async def settle(self, documents: list[Document]) -> None:
        """Remove the outbox entries these documents hold (published, or never to be) from
        their outboxes, for every document in one round trip (two when another writer added
        events meanwhile)."""
        field, since = self.field, self.since
        # usually nobody added events meanwhile: then one update empties each outbox. Entries
        # are only ever appended, so an outbox as long as this one's, ending with its last
        # event, holds exactly its events (SecantusDB matches no $all of two or more event
        # ids; matching the whole array would send every payload back)
        emptied_whole = [
            UpdateOne(
                {
                    "_id": doc["_id"],
                    field: {"$size": len(doc[field])},
                    f"{field}.{len(doc[field]) - 1}.{OutboxF.EVENT_ID}": doc[field][-1][
                        OutboxF.EVENT_ID
                    ],
                },
                {"$unset": {field: "", since: ""}},
            )
            for doc in documents
        ]
        result = await self.collection.bulk_write(emptied_whole, ordered=False)
        if result.matched_count == len(documents):
            return
        published = [
            UpdateOne(
                {"_id": doc["_id"]},
                {
                    "$pull": {
                        field: {
                            OutboxF.EVENT_ID: {"$in": [e[OutboxF.EVENT_ID] for e in doc[field]]}
                        }
                    }
                },
            )
            for doc in documents
        ]
        emptied = [
            UpdateOne({"_id": doc["_id"], field: {"$size": 0}}, {"$unset": {since: ""}})
            for doc in documents
        ]
        await self.collection.bulk_write(published + emptied, ordered=True)

    async def relay_pending(self, older_than: timedelta, limit: int = 500) -> int:
        """Publish what writers left behind (crash, Kafka down): the entries that
        ``happened``, the others removed unpublished; returns documents relayed."""
        cutoff = utcnow() - older_than
        cursor = self.collection.find(
            {self.since: {"$lte": cutoff}}, {self.field: 1}, limit=limit
        ).sort(self.since, 1)
        found = await cursor.to_list()
        documents = [doc for doc in found if doc.get(self.field)]
        if documents:
            happened = documents if self.happened is None else await self.happened(documents)
            await self.publish(entry for doc in happened for entry in doc.get(self.field) or ())
            await self.settle(documents)
        return len(found)

    async def run(
        self, interval: float = 1.0, older_than: timedelta = RELAY_AFTER, limit: int = 500
    ) -> None:
        """The relay loop: never gives up; Kafka or MongoDB errors are logged and retried."""

        async def relay() -> None:
            if relayed := await self.relay_pending(older_than, limit):
                log.warning(
                    "relayed events left in outboxes",
                    collection=self.collection.name,
                    documents=relayed,
                )

        await keep_running(relay, interval, "outbox relay failed; will retry")
