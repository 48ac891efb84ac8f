"""MongoDB plumbing: the ``AsyncMongoClient`` factory, collection names and index bootstrap."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure, ServerSelectionTimeoutError

from callback_shared.record import NUMBER_PREFIX_EXPRESSION, F
from callback_shared.settings import PlatformSettings

CALLBACKS = "callbacks"
SERVICES = "services"
#: The Cancellation Summary Report: one entry per actor, batch and callback, written by the
#: exporter and read by admin-api (see :mod:`callback_shared.reports`).
CANCELLATION_REPORT = "cancellation_report"

log = structlog.get_logger(__name__)

Document = dict[str, Any]
#: Indexes by collection name: what a service creates at start (:func:`ensure_indexes`).
CollectionIndexes = Mapping[str, Sequence[IndexModel]]

#: Indexes of the ``callbacks`` collection, by name. ``expire_at`` = desired time + 14 days and
#: ``expireAfterSeconds=0``: the server deletes each record 14 days after its desired time.
CALLBACK_INDEXES: list[IndexModel] = [
    IndexModel([(F.EXPIRE_AT, ASCENDING)], name="retention_ttl", expireAfterSeconds=0),
    # list: time range on desired time, sorted by desired time, cursor on (desired_time, _id)
    IndexModel([(F.DESIRED_TIME, ASCENDING), ("_id", ASCENDING)], name="by_desired_time"),
    IndexModel(
        [(F.SERVICE_NAME, ASCENDING), (F.DESIRED_TIME, ASCENDING), ("_id", ASCENDING)],
        name="by_service_desired_time",
    ),
    IndexModel(
        [(F.STATE, ASCENDING), (F.DESIRED_TIME, ASCENDING), ("_id", ASCENDING)],
        name="by_state_desired_time",
    ),
    # Callback Search and the search box by number; duplicate checks and throttling
    IndexModel(
        [(F.CUSTOMER_NUMBER, ASCENDING), (F.DESIRED_TIME, DESCENDING)], name="by_customer_number"
    ),
    # the search box by a phone prefix of exactly NUMBER_PREFIX_DIGITS digits: equality on the
    # prefix, then desired time, so a page reads about a page of entries (a prefix range on
    # ``by_customer_number`` reads every callback with that prefix)
    IndexModel(
        [(F.CUSTOMER_NUMBER_PREFIX, ASCENDING), (F.DESIRED_TIME, ASCENDING), ("_id", ASCENDING)],
        name="by_customer_number_prefix",
    ),
    IndexModel(
        [(F.SERVICE_NAME, ASCENDING), (F.CUSTOMER_NUMBER, ASCENDING), (F.STATE, ASCENDING)],
        name="open_by_service_number",
    ),
    # the search box by id prefix: a range of ids. MongoDB's own ``_id`` index serves it (this
    # one then costs a key per callback, like ``_id_``); the local server looks up ``_id`` by
    # equality only and scanned the collection for a range (13 s at 300k callbacks)
    IndexModel([("_id", ASCENDING), (F.DESIRED_TIME, ASCENDING)], name="by_id_prefix"),
    # scheduler: what is due, and what is still waiting for routing
    IndexModel([(F.DISPATCH_AT, ASCENDING)], name="dispatch_due", sparse=True),
    # outbox relay: documents whose events are not yet published
    IndexModel([(F.OUTBOX_SINCE, ASCENDING)], name="outbox_pending", sparse=True),
    # scheduler: attempts routing holds, by last sign of life (lost ones are reclaimed); cancels
    # waiting for routing's answer (sent again)
    IndexModel([(F.ROUTING_SEEN_AT, ASCENDING)], name="routing_seen", sparse=True),
    IndexModel([(F.CANCEL_PENDING_SINCE, ASCENDING)], name="cancel_pending", sparse=True),
    # admin-api: list by service and state; open callbacks of a service (request guard)
    IndexModel(
        [
            (F.SERVICE_NAME, ASCENDING),
            (F.STATE, ASCENDING),
            (F.DESIRED_TIME, ASCENDING),
            ("_id", ASCENDING),
        ],
        name="by_service_state_desired_time",
    ),
]

#: Indexes of the ``cancellation_report`` collection: a user's recent cancellations, newest first
#: (equality on ``actor``, range on ``occurred_at``); entries expire at ``expire_at``.
CANCELLATION_REPORT_INDEXES: list[IndexModel] = [
    IndexModel(
        [("actor", ASCENDING), ("occurred_at", DESCENDING), ("_id", DESCENDING)],
        name="report_by_actor_occurred_at",
    ),
    IndexModel([("expire_at", ASCENDING)], name="report_retention_ttl", expireAfterSeconds=0),
]


def make_mongo_client(settings: PlatformSettings, **options: Any) -> AsyncMongoClient[Document]:
    """A client that returns aware UTC datetimes and standard UUIDs; connects lazily.

    Every write waits for the write concern of the settings (default ``w: majority, j: true``:
    on a majority of nodes and in their journals) and every read uses their read concern
    (default ``majority``); these take precedence over the same options in the URL. With
    ``MONGODB_TLS_CA_FILE`` / ``MONGODB_TLS_CERTIFICATE_KEY_FILE`` it connects with TLS.
    """
    options.setdefault("serverSelectionTimeoutMS", 5000)
    options.setdefault("appname", "callback-platform")
    if "maxidletimems" not in settings.mongodb_url.lower():
        # servers and proxies close idle connections (SecantusDB after 300 s); a multi-document
        # write on such a connection is not retried: leave the pool before they do
        options.setdefault("maxIdleTimeMS", 60_000)
    w = settings.mongodb_write_concern
    options.setdefault("w", int(w) if w.isdigit() else w)
    options.setdefault("journal", settings.mongodb_journal)
    options.setdefault("wTimeoutMS", settings.mongodb_write_timeout_ms)
    options.setdefault("readConcernLevel", settings.mongodb_read_concern)
    # TLS: either file turns it on (credentials stay in the URL)
    if settings.mongodb_tls_ca_file is not None:
        options.setdefault("tlsCAFile", str(settings.mongodb_tls_ca_file))
    if settings.mongodb_tls_certificate_key_file is not None:
        options.setdefault("tlsCertificateKeyFile", str(settings.mongodb_tls_certificate_key_file))
    return AsyncMongoClient(
        settings.mongodb_url, tz_aware=True, uuidRepresentation="standard", **options
    )


#: MongoDB's codes for "who you are is not accepted": AuthenticationFailed, Unauthorized
_REFUSED_CODES = {18, 13}
_UNTRUSTED = ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed")


class MongoAccessDenied(Exception):
    """MongoDB answered but refused this client (wrong credentials, or a server certificate
    that ``MONGODB_TLS_CA_FILE`` does not vouch for): a setting is wrong, retrying will not
    help. The message is one line and holds no secret (never the URL, which may hold one)."""


async def check_mongo_access(client: AsyncMongoClient[Document]) -> None:
    """Ping MongoDB; a refusal raises :class:`MongoAccessDenied`, anything else is transient."""
    try:
        await client.admin.command("ping")
    except OperationFailure as exc:
        if exc.code in _REFUSED_CODES:
            raise MongoAccessDenied(
                f"MongoDB {_servers(client)}: authentication failed (check the credentials "
                "in MONGODB_URL)"
            ) from None
        raise
    except ServerSelectionTimeoutError as exc:
        if any(sign in str(exc) for sign in _UNTRUSTED):
            raise MongoAccessDenied(
                f"MongoDB {_servers(client)}: server certificate not trusted "
                "(check MONGODB_TLS_CA_FILE)"
            ) from None
        raise


def _servers(client: AsyncMongoClient[Document]) -> str:
    addresses = client.topology_description.server_descriptions()
    return ",".join(f"{host}:{port}" for host, port in addresses) or "(no server)"


def database(
    client: AsyncMongoClient[Document], settings: PlatformSettings
) -> AsyncDatabase[Document]:
    return client[settings.mongodb_database]


#: The shared collections' indexes: the callbacks (every service's) and the report (the
#: exporter's and admin-api's); ``callback-bootstrap`` creates these.
SHARED_INDEXES: CollectionIndexes = {
    CALLBACKS: CALLBACK_INDEXES,
    CANCELLATION_REPORT: CANCELLATION_REPORT_INDEXES,
}


async def ensure_indexes(
    db: AsyncDatabase[Document], collections: CollectionIndexes | None = None
) -> list[str]:
    """Create the indexes of the callbacks collection, which every service uses, and those of
    ``collections`` (a service's own collections, and the shared ones it uses); then set the
    fields derived for an index on records stored before the field existed. Idempotent: a
    second run changes nothing. The callbacks collection's indexes are :data:`CALLBACK_INDEXES`
    (as in :data:`SHARED_INDEXES`); another list for it in ``collections`` is refused (it was
    once silently ignored)."""
    collections = collections or {}
    if collections.get(CALLBACKS, CALLBACK_INDEXES) is not CALLBACK_INDEXES:
        raise ValueError(f"the {CALLBACKS!r} indexes are CALLBACK_INDEXES; add an index there")
    created = await db[CALLBACKS].create_indexes(list(CALLBACK_INDEXES))
    for name, indexes in collections.items():
        if name != CALLBACKS:
            created += await db[name].create_indexes(list(indexes))
    await backfill_number_prefixes(db)
    return created


async def backfill_number_prefixes(db: AsyncDatabase[Document]) -> int:
    """Set ``customer_number_prefix`` on the records that lack it (stored before it existed);
    how many. Finding none is one lookup in ``by_customer_number_prefix`` (a missing field is
    indexed as null)."""
    result = await db[CALLBACKS].update_many(
        {F.CUSTOMER_NUMBER_PREFIX: None},
        [{"$set": {F.CUSTOMER_NUMBER_PREFIX: NUMBER_PREFIX_EXPRESSION}}],
    )
    if result.modified_count:
        log.info("customer number prefixes set on stored callbacks", count=result.modified_count)
    return result.modified_count
