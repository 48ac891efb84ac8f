"""The outbox relay against real Kafka and MongoDB: a flush publishes the events and empties the
outbox in one update, unless another writer added events meanwhile, which then stay."""

from uuid import uuid4

from callback_shared.documents import lifecycle_event, new_callback_document
from callback_shared.kafka import ensure_topics, make_broker
from callback_shared.models import CallbackType, LifecycleEventKind, utcnow
from callback_shared.mongo import CALLBACKS, Document
from callback_shared.outbox import OutboxRelay, outbox_entry, with_outbox
from callback_shared.record import F
from callback_shared.settings import PlatformSettings
from pymongo.asynchronous.database import AsyncDatabase

from tests.pipeline.helpers import TopicReader, eventually


def callback() -> Document:
    return new_callback_document(
        callback_id=uuid4(),
        service_name="billing",
        customer_number="+14155550100",
        type=CallbackType.IMMEDIATE,
        desired_time=utcnow(),
        now=utcnow(),
    )


def entry(settings: PlatformSettings, doc: Document, kind: LifecycleEventKind) -> Document:
    event = lifecycle_event(doc, kind, occurred_at=utcnow(), actor=kind.value)
    return outbox_entry(settings.topic_lifecycle_events, event)


async def test_flush_publishes_and_empties_outboxes_keeping_what_others_added(
    settings: PlatformSettings, db: AsyncDatabase[Document]
) -> None:
    await ensure_topics(settings, "test")
    alone, raced = callback(), callback()
    written = []
    for doc in (alone, raced):
        doc[F.OUTBOX] = [entry(settings, doc, LifecycleEventKind.CREATED)]
        doc[F.OUTBOX_SINCE] = utcnow()
        written.append(dict(doc))
    await db[CALLBACKS].insert_many([alone, raced])
    # another writer adds an event to ``raced`` after our write, before our flush
    later = entry(settings, raced, LifecycleEventKind.CANCELLED)
    await db[CALLBACKS].update_one({"_id": raced["_id"]}, with_outbox({}, [later]))

    broker = make_broker(settings, "test-outbox")
    await broker.start()
    topic = settings.topic_lifecycle_events
    try:
        async with TopicReader(settings.kafka_bootstrap_servers, topic) as reader:
            await OutboxRelay(db[CALLBACKS], broker).flush(written)

            async def both_published() -> bool:
                return len(reader.messages) == 2

            await eventually(both_published, 20, "the two flushed events on Kafka")
    finally:
        await broker.stop()
    assert {m["event_id"] for m in reader.messages} == {
        str(doc[F.OUTBOX][0]["event_id"]) for doc in written
    }
    after = {doc["_id"]: doc for doc in await db[CALLBACKS].find().to_list()}
    assert F.OUTBOX not in after[alone["_id"]] and F.OUTBOX_SINCE not in after[alone["_id"]]
    # the other writer's event stays for its own flush (or the relay)
    assert [e["event_id"] for e in after[raced["_id"]][F.OUTBOX]] == [later["event_id"]]
    assert after[raced["_id"]][F.OUTBOX_SINCE] is not None


async def test_settle_empties_a_whole_outbox_at_once_and_keeps_what_came_after(
    settings: PlatformSettings, db: AsyncDatabase[Document]
) -> None:
    """An outbox of several events is emptied by the one conditional update; an outbox as long
    as the settled one but ending with an event added later (some of ours removed meanwhile)
    keeps that event."""
    whole, shifted = callback(), callback()
    kinds = [LifecycleEventKind.CREATED, LifecycleEventKind.RESCHEDULED]
    for doc in (whole, shifted):
        doc[F.OUTBOX] = [entry(settings, doc, kind) for kind in kinds]
        doc[F.OUTBOX_SINCE] = utcnow()
    settled = [dict(whole), dict(shifted)]
    await db[CALLBACKS].insert_many([whole, shifted])
    # on ``shifted``, another flush removed the first event and a writer appended one: the
    # outbox is as long as ours again, and its last event is not ours
    first = shifted[F.OUTBOX][0]["event_id"]
    await db[CALLBACKS].update_one(
        {"_id": shifted["_id"]}, {"$pull": {F.OUTBOX: {"event_id": first}}}
    )
    later = entry(settings, shifted, LifecycleEventKind.CANCELLED)
    await db[CALLBACKS].update_one({"_id": shifted["_id"]}, with_outbox({}, [later]))

    broker = make_broker(settings, "test-outbox-settle")
    await broker.start()
    try:
        await OutboxRelay(db[CALLBACKS], broker).settle(settled)
    finally:
        await broker.stop()
    after = {doc["_id"]: doc for doc in await db[CALLBACKS].find().to_list()}
    assert F.OUTBOX not in after[whole["_id"]] and F.OUTBOX_SINCE not in after[whole["_id"]]
    assert [e["event_id"] for e in after[shifted["_id"]][F.OUTBOX]] == [later["event_id"]]
    assert after[shifted["_id"]][F.OUTBOX_SINCE] is not None
