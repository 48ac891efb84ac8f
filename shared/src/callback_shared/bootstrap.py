"""``callback-bootstrap``: create the platform's Kafka topics and MongoDB indexes, then exit.

The one-shot step of a deployment (the compose ``bootstrap`` service, the Helm chart's
pre-install/pre-upgrade Job). Every service still creates what is missing when it starts; this
step makes it happen once, before any service runs, with the configured partition count. It is
idempotent: existing topics are left as they are (a partition count that differs from
``TOPIC_PARTITIONS`` is reported, never changed) and existing indexes are kept.

Indexes: those of the shared collections (:data:`~callback_shared.mongo.SHARED_INDEXES`: the
callbacks, the Cancellation Summary Report). A service's own collections (admin-api's slots,
request counters and bulk cancel jobs) are its own business: it creates their indexes when it
starts, before it turns ready. Being shared code, this step runs in every service image. After
the indexes, records stored by an earlier version get the fields an index of this one needs
(``customer_number_prefix``, see :func:`~callback_shared.mongo.ensure_indexes`).

Exit codes: 0 done; 1 Kafka or MongoDB did not answer within ``--timeout``; 2 bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import structlog
from tenacity import AsyncRetrying, RetryError, stop_after_delay, wait_exponential_jitter

from callback_shared.kafka import ensure_topics, make_admin_client, topics
from callback_shared.log import configure_logging
from callback_shared.mongo import (
    CALLBACKS,
    SHARED_INDEXES,
    database,
    ensure_indexes,
    make_mongo_client,
)
from callback_shared.settings import PlatformSettings, load_settings

NAME = "bootstrap"
DEFAULT_TIMEOUT_SECONDS = 120.0

log = structlog.get_logger(NAME)


async def bootstrap_kafka(settings: PlatformSettings) -> dict[str, int]:
    """Create missing topics; return every platform topic with its partition count."""
    await ensure_topics(settings, NAME)
    admin = make_admin_client(settings, f"{NAME}-admin")
    await admin.start()
    try:
        described: list[dict[str, Any]] = await admin.describe_topics(topics(settings))
    finally:
        await admin.close()
    return {topic["topic"]: len(topic["partitions"]) for topic in described}


async def bootstrap_mongo(settings: PlatformSettings) -> list[str]:
    """Create missing indexes; return the names of the indexes of the callbacks collection."""
    client = make_mongo_client(settings)
    try:
        db = database(client, settings)
        await ensure_indexes(db, SHARED_INDEXES)
        return sorted(await db[CALLBACKS].index_information())
    finally:
        await client.close()


async def bootstrap(settings: PlatformSettings, retry_seconds: float) -> None:
    """Both steps, retried with backoff until ``retry_seconds`` have passed."""
    async for attempt in AsyncRetrying(
        stop=stop_after_delay(retry_seconds),
        wait=wait_exponential_jitter(multiplier=0.5, max=5),
        before_sleep=lambda state: log.warning(
            "dependencies not reachable yet, retrying",
            attempt=state.attempt_number,
            error=repr(state.outcome.exception()) if state.outcome else None,
        ),
    ):
        with attempt:
            indexes = await bootstrap_mongo(settings)
            partitions = await bootstrap_kafka(settings)
    log.info("indexes ready", database=settings.mongodb_database, indexes=indexes)
    for topic, count in partitions.items():
        if count != settings.topic_partitions:
            log.warning(
                "topic exists with another partition count; left unchanged",
                topic=topic,
                partitions=count,
                configured=settings.topic_partitions,
            )
    log.info("topics ready", topics=partitions)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="callback-bootstrap", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help="seconds to keep retrying while Kafka or MongoDB do not answer (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    settings = load_settings(PlatformSettings)
    configure_logging(NAME, settings)
    try:
        asyncio.run(bootstrap(settings, args.timeout))
    except RetryError as exc:
        log.error("bootstrap failed", error=repr(exc.last_attempt.exception()))
        raise SystemExit(1) from None
