"""The local server's TTL monitor (``callback_dev.secantusd_launcher``) deletes exactly what
SecantusDB's own sweep (``Storage.prune_ttl``) deletes: the same random documents and TTL indexes
in two in-process stores, one swept by each."""

import copy
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bson
import pytest
from callback_dev import secantusd_launcher as launcher
from secantus.storage import Storage  # type: ignore[import-untyped]

NOW = datetime(2026, 12, 1, 12, 0, 0, 123000, tzinfo=UTC)


def a_value(rng: random.Random) -> Any:
    """A date around ``NOW`` (past, on a cutoff, future), an array of them, or something else."""
    r = rng.random()
    date = NOW + timedelta(milliseconds=rng.choice([-1, 1]) * rng.choice([0, 1, 500, 60_000]))
    if r < 0.5:
        return date
    if r < 0.6:
        return NOW - timedelta(seconds=rng.choice([30, 60]))  # on a cutoff: not expired
    if r < 0.7:
        return [a_value(rng) for _ in range(rng.randint(0, 3))]
    others = [None, 3, "2020-01-01", {"at": date}, bson.Timestamp(1, 1), datetime(1969, 1, 1)]
    return rng.choice([*others, "absent"])


def documents(rng: random.Random, n: int) -> list[dict[str, Any]]:
    docs = []
    for i in range(n):
        doc: dict[str, Any] = {"_id": i, "kind": rng.choice(["a", "b"])}
        for field in ("t", "u", "v"):
            value = a_value(rng)
            if value != "absent":
                doc[field] = {"w": value} if field == "v" else value
        docs.append(doc)
    return docs


def ttl_indexes(rng: random.Random) -> list[tuple[str, dict[str, int], dict[str, Any]]]:
    indexes: list[tuple[str, dict[str, int], dict[str, Any]]] = [("plain_t", {"t": 1}, {})]
    for field in ("t", "u", "v.w"):
        options: dict[str, Any] = {"expireAfterSeconds": rng.choice([0, 30, 60, 0.5])}
        if rng.random() < 0.3:
            options["partialFilterExpression"] = {"kind": "a"}
        if rng.random() < 0.2:
            options["sparse"] = True
        indexes.append((f"ttl_{field}", {field: rng.choice([1, -1])}, options))
    return indexes


@pytest.mark.parametrize(("seed", "scan", "chunk"), [(1, 256, 4), (2, 3, 2)])
def test_the_monitor_deletes_what_the_stock_sweep_deletes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, scan: int, chunk: int
) -> None:
    monkeypatch.setattr(launcher, "MIN_PAUSE", 0.0)
    monkeypatch.setattr(launcher, "PAUSE_FACTOR", 0.0)
    monkeypatch.setattr(launcher, "SCAN", scan)  # resumes the index scan often
    monkeypatch.setattr(launcher, "CHUNK", chunk)
    rng = random.Random(seed)
    data = {("db", f"c{n}"): documents(rng, 300) for n in range(2)}
    indexes = {namespace: ttl_indexes(rng) for namespace in data}
    stores = []
    for name in ("stock", "ours"):
        store = Storage(str(tmp_path / name), ttl_sweep_seconds=0)
        for (db, coll), docs in data.items():
            for index, key, options in indexes[(db, coll)]:
                store.create_index(db, coll, index, key, options)
            store.insert(db, coll, copy.deepcopy(docs))
        stores.append(store)
    stock, ours = stores
    try:
        pruned = sum(stock.prune_ttl(db, coll, now=NOW) for db, coll in data)
        assert launcher.sweep(ours, now=NOW) == pruned > 0
        for db, coll in data:
            left = sorted(doc["_id"] for doc in ours.find_matching(db, coll, {}))
            assert left == sorted(doc["_id"] for doc in stock.find_matching(db, coll, {}))
    finally:
        for store in stores:
            store.close()
