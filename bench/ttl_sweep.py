"""TTL monitor: how long the MongoDB-protocol server keeps a client waiting while its TTL monitor
deletes 5k expired callbacks among 100k stored (the callbacks' own `retention_ttl` index), and how
soon after their expiry they are gone. Probes: one client alternating a read and a write of a
stored callback by id, every 10 ms, from the expiry until the sweep is over."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import timedelta

from callback_dev.infra import Infrastructure
from callback_shared.models import RETENTION, utcnow
from callback_shared.mongo import CALLBACKS, SHARED_INDEXES, ensure_indexes, make_mongo_client
from callback_shared.settings import PlatformSettings

from bench.common import callback_documents, insert, isolated_settings
from bench.harness import Metric, Result, backend, percentile

STORED = 100_000
EXPIRED = 5_000
#: the expired callbacks expire this long after they are stored
EXPIRY_LEAD = timedelta(seconds=30)
#: the server's TTL monitor runs once a minute: wait for one sweep and its end
DEADLINE_S = 240.0
PROBE_PAUSE_S = 0.01
WATCH_PAUSE_S = 0.25


async def run(infra: Infrastructure) -> Result:
    settings = isolated_settings(PlatformSettings, infra)
    client = make_mongo_client(settings)
    db = client[settings.mongodb_database]
    await ensure_indexes(db, SHARED_INDEXES)
    rng = random.Random(1)
    stored = callback_documents(
        [utcnow() + timedelta(hours=1, seconds=rng.uniform(0, 3600)) for _ in range(STORED)]
    )
    await insert(db, stored)
    expiry = utcnow() + EXPIRY_LEAD
    expired = callback_documents([expiry - RETENTION] * EXPIRED)  # all expire at one instant
    await insert(db, expired)
    if utcnow() >= expiry:
        raise RuntimeError("seeding took too long: the callbacks expired while being stored")
    # the first and the last to go: the TTL index orders equal dates by insertion
    first, last = expired[0]["_id"], expired[-1]["_id"]
    ids = [doc["_id"] for doc in stored]
    await asyncio.sleep((expiry - utcnow()).total_seconds() + 1)

    probes: list[tuple[float, float]] = []  # (monotonic start, latency ms)
    gone: dict[object, float] = {}
    started = time.monotonic()

    async def probe() -> None:
        n = 0
        while last not in gone or time.monotonic() < gone[last] + 1:
            target = {"_id": rng.choice(ids)}
            at = time.monotonic()
            if n % 2:
                await db[CALLBACKS].update_one(target, {"$set": {"bench_probe": n}})
            else:
                await db[CALLBACKS].find_one(target)
            probes.append((at, (time.monotonic() - at) * 1000))
            n += 1
            if at - started > DEADLINE_S:
                return
            await asyncio.sleep(PROBE_PAUSE_S)

    async def watch() -> None:
        while last not in gone and time.monotonic() - started < DEADLINE_S:
            for key in (first, last):
                if key not in gone and await db[CALLBACKS].find_one({"_id": key}) is None:
                    gone[key] = time.monotonic()
            await asyncio.sleep(WATCH_PAUSE_S)

    await asyncio.gather(probe(), watch())
    if last not in gone:
        raise RuntimeError(f"the expired callbacks were not deleted within {DEADLINE_S:.0f} s")
    left = await db[CALLBACKS].count_documents({"expire_at": {"$lt": utcnow()}})
    kept = await db[CALLBACKS].count_documents({})
    await client.drop_database(settings.mongodb_database)
    await client.close()
    # the sweep: from a little before the first went until the last went (watch resolution)
    begin, end = gone.get(first, gone[last]) - WATCH_PAUSE_S, gone[last]
    during = [ms for at, ms in probes if begin <= at <= end] or [0.0]
    # the same client's requests before the sweep: what the machine gives without it
    before = [ms for at, ms in probes if at < begin - 1] or [0.0]
    every = [ms for _, ms in probes]
    result = Result("ttl_sweep", backend=backend(infra))
    result.metrics.update(
        {
            "stored": Metric(STORED, "documents"),
            "expired_deleted": Metric(EXPIRED - left, "documents", target=EXPIRED, better="higher"),
            "stored_kept": Metric(kept, "documents", target=STORED, better="higher"),
            "gone_after_expiry_s": Metric(end - started + 1, "s"),
            "sweep_s": Metric(end - begin, "s"),
            "probe_during_sweep_p50_ms": Metric(percentile(during, 50), "ms"),
            "probe_during_sweep_p99_ms": Metric(percentile(during, 99), "ms"),
            "probe_during_sweep_max_ms": Metric(max(during), "ms", target=100),
            "probe_before_sweep_p99_ms": Metric(percentile(before, 99), "ms"),
            "probe_before_sweep_max_ms": Metric(max(before), "ms"),
            "probe_max_ms": Metric(max(every), "ms"),
            "probes": Metric(len(every), "requests"),
        }
    )
    return result
