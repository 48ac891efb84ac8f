"""``secantusd-py`` with a TTL monitor that range-scans the TTL index and deletes in short slices.

``callback-infra`` (``make up``, the tests, the benchmarks) starts every local SecantusDB through
this module. SecantusDB 0.7's own sweeper (``Storage._ttl_sweep_loop`` -> ``prune_ttl``) decodes
every document of every collection that has a TTL index once a minute, holding the storage lock
that every read takes: with 100k callbacks the server answered nothing for ~6.5 s (seen with
py-spy), ~65 s at 1M, and the scheduler's lateness p99 was ~1.9 s. This module runs the stock CLI
with that loop replaced by :func:`sweep_loop`:

* every ``SECANTUS_TTL_SWEEP_SECONDS`` (default 60 s, as mongod's TTL monitor), counted from the
  end of the previous sweep (the stock CLI reads ``[storage] ttl_sweep_seconds`` but never passes
  it on; this module passes the variable's value);
* for each TTL index (the rules of ``Storage.prune_ttl``: one field, not ``_id``, ascending or
  descending, ``expireAfterSeconds`` a number >= 0), a range scan of the index's own entries for
  dates before ``now - expireAfterSeconds``: only the expired keys are read, so a sweep costs what
  expires, not what is stored;
* those documents are deleted through the server's own deleteMany chunk (``Storage._delete_chunk``
  under the collection's lock, :data:`CHUNK` documents a transaction: it re-reads each document
  in the transaction and deletes it only if it still matches ``prune_ttl``'s filter, partial
  filter included; index entries and oplog as any delete), for about :data:`SLICE_SECONDS` at a
  time; then the sweep pauses :data:`PAUSE_FACTOR` times as long, holding no lock and no
  WiredTiger snapshot, so the server keeps answering.

Expiry is what it was: a document goes within about a minute after its date passes, by the TTL
index. What the local server gives up is speed on a large batch: a deletion costs ~0.8 ms of CPU
here (the document and its entries in the callbacks' 11 indexes) and the monitor deletes a fifth
of the time at most, ~15k documents a minute on an idle machine, ~5k under a load of 3-4 on the
2-core VM (5k expired callbacks took 59 s), where the stock sweep deleted them all in one stall.
A sweep that deleted anything logs one line (how many, how long, the longest lock hold).
"""

from __future__ import annotations

import faulthandler
import functools
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import wiredtiger  # type: ignore[import-untyped]
from secantus import cli, server, sortkey  # type: ignore[import-untyped]
from secantus import storage as wt_storage

PERIOD_VARIABLE = "SECANTUS_TTL_SWEEP_SECONDS"
#: a slice deletes expired documents for about this long (seconds), holding the collection's lock
#: (a deletion costs ~0.8 ms of CPU here: the document and its entries in each of the callbacks'
#: 11 indexes, WiredTiger's keys packed in Python; a first chunk always runs)
SLICE_SECONDS = 0.005
#: then the sweep pauses for this many times as long as the slice held the lock, at least MIN_PAUSE
PAUSE_FACTOR = 4.0
MIN_PAUSE = 0.02
#: expired index entries read at a time (key-only: cheap), and documents per delete transaction
#: (a transaction costs ~1 ms more: fewer than 4 wastes CPU, more makes a slice longer)
SCAN = 256
CHUNK = 4

log = logging.getLogger("callback_dev.secantusd_launcher")

#: the storage methods the sweep uses: a SecantusDB without them is refused at start
NEEDED = (
    "_ttl_sweep_loop",
    "_coll_lock",
    "_cursor",
    "_iter_indexes",
    "_delete_chunk",
    "_refresh_read_snapshot",
    "_reset_thread_session",
    "release_thread_snapshot",
)


@dataclass(frozen=True)
class TtlIndex:
    name: str
    field: str
    direction: int  # 1 or -1
    expire_after_seconds: float
    partial: dict[str, Any] | None

    def expired_filter(self, cutoff: datetime) -> dict[str, Any]:
        """``Storage.prune_ttl``'s filter: the field holds a date before ``cutoff`` (an array, any
        date in it) and the document is in the index."""
        expired: dict[str, Any] = {self.field: {"$lt": cutoff}}
        return {"$and": [expired, self.partial]} if self.partial else expired

    def key_range(self, cutoff: datetime) -> tuple[bytes, bytes, bytes | None]:
        """The stored (escaped) keys of dates before ``cutoff``: ``(start, stop, skip)``.

        Entries are ``escape(key) + b"\\0\\0" + RecordId``; a key is a type rank byte and the
        value's byte-sortable form (8 bytes for a date), byte-inverted in a descending index.
        Ascending: ``[rank, key(cutoff))``. Descending: ``(inverted key(cutoff), 0xFF - rank + 1)``,
        ``skip`` being the excluded lower end."""
        key = wt_storage._escape_kb(sortkey.encode_value_directed(cutoff, self.direction))
        if self.direction == 1:
            return bytes([sortkey.RANK_DATE]), key, None
        return key, bytes([0xFF - sortkey.RANK_DATE + 1]), key


def ttl_indexes(store: Any, db: str, coll: str) -> list[TtlIndex]:
    """The collection's TTL indexes, by the rules of ``Storage.prune_ttl``."""
    found = []
    for name, key_spec, options in list(store._iter_indexes(db, coll)):
        ttl = options.get("expireAfterSeconds")
        if isinstance(ttl, bool) or not isinstance(ttl, int | float):
            continue
        if ttl != ttl or ttl < 0 or len(key_spec) != 1:
            continue
        field, direction = next(iter(key_spec.items()))
        if not isinstance(field, str) or field == "_id":
            continue
        if isinstance(direction, bool) or not isinstance(direction, int | float):
            continue
        partial = options.get("partialFilterExpression")
        found.append(
            TtlIndex(
                name,
                field,
                -1 if int(direction) == -1 else 1,  # as the server stores its entries
                float(ttl),
                dict(partial) if partial else None,
            )
        )
    return found


def namespaces(store: Any) -> list[tuple[str, str]]:
    """Every (database, collection), as ``Storage.prune_ttl_all_collections`` lists them."""
    with store._lock:
        cursor = store._cursor(wt_storage._COLL_TABLE)
        found = []
        while cursor.next() == 0:
            key = cursor.get_key()
            found.append((key[0], key[1]))
        cursor.reset()
        return found


def expired_slice(
    store: Any, db: str, coll: str, index: TtlIndex, cutoff: datetime, after: bytes | None
) -> tuple[list[int], bytes | None]:
    """Up to :data:`SCAN` RecordIds of documents whose key in ``index`` is a date before
    ``cutoff``, in index order after the entry ``after``; and the last entry read."""
    start, stop, skip = index.key_range(cutoff)
    cursor = store._cursor(wt_storage._IDX_ENTRIES_TABLE)
    cursor.set_key(db, coll, index.name, after if after is not None else start)
    found = cursor.search_near()
    if found == wiredtiger.WT_NOTFOUND or (found < 0 and cursor.next() != 0):
        return [], None
    records: list[int] = []
    last = None
    while len(records) < SCAN:
        key = cursor.get_key()
        if (key[0], key[1], key[2]) != (db, coll, index.name):
            break
        entry = bytes(key[3])
        if after is None or entry > after:
            escaped, record = wt_storage._unpack_entry(entry)
            if escaped >= stop:
                break
            if escaped != skip and record is not None:
                records.append(record)
            last = entry
        if cursor.next() != 0:
            break
    cursor.reset()
    return records, last


def sweep_index(
    store: Any, db: str, coll: str, index: TtlIndex, now: datetime
) -> Iterator[tuple[int, float]]:
    """Delete the documents ``index`` says expired, a slice of about :data:`SLICE_SECONDS` at a
    time: yields each slice's count and how long it held the collection's lock (the caller
    pauses between slices)."""
    try:
        cutoff = now - timedelta(seconds=index.expire_after_seconds)
    except OverflowError:
        return
    condition = index.expired_filter(cutoff)
    pending: list[int] = []  # read from the index, not deleted yet
    after: bytes | None = None  # the last index entry read
    exhausted = False
    while True:
        deleted = 0
        with store._coll_lock(db, coll):
            held = time.monotonic()
            store._refresh_read_snapshot()
            deadline = held + SLICE_SECONDS
            while time.monotonic() < deadline:
                if not pending:
                    if exhausted:
                        break
                    pending, after = expired_slice(store, db, coll, index, cutoff, after)
                    exhausted = len(pending) < SCAN
                    if not pending:
                        break
                # re-reads each document in the transaction: deletes it only if still expired
                consumed, removed = store._delete_chunk(
                    db,
                    coll,
                    pending[:CHUNK],
                    condition,
                    let=None,
                    collation_obj=None,
                    journal=False,
                )
                del pending[:consumed]
                deleted += removed
            held = time.monotonic() - held
        store.release_thread_snapshot()  # no snapshot pinned while the sweep pauses
        yield deleted, held
        if exhausted and not pending:
            return


def sweep(store: Any, now: datetime | None = None) -> int:
    """One pass over every TTL index, pausing after each slice; returns early when the storage
    stops. Returns how many documents it deleted."""
    started = time.monotonic()
    work = longest = 0.0
    deleted = slices = 0
    now = now or datetime.now(UTC)
    for db, coll in namespaces(store):
        try:
            indexes = ttl_indexes(store, db, coll)
            for index in indexes:
                for count, held in sweep_index(store, db, coll, index, now):
                    work, longest = work + held, max(longest, held)
                    deleted, slices = deleted + count, slices + 1
                    pause = max(held * PAUSE_FACTOR, MIN_PAUSE)
                    if store._ttl_stop.wait(pause) or store._closed:
                        return deleted
        except Exception:
            # a collection dropped meanwhile, or worse: say so, go on with the others
            log.exception("TTL sweep of %s.%s failed", db, coll)
    if deleted:
        log.info(
            "TTL sweep deleted %d expired documents in %d slices over %.1f s "
            "(the collection's lock held %.0f ms in all, %.1f ms at most)",
            deleted,
            slices,
            time.monotonic() - started,
            work * 1000,
            longest * 1000,
        )
    return deleted


def sweep_loop(store: Any) -> None:
    """Replaces ``Storage._ttl_sweep_loop``: the same thread, period, stop and session handling."""
    try:
        while not store._ttl_stop.wait(store._ttl_sweep_seconds):
            if store._closed:
                return
            store._reset_thread_session()  # a fresh WiredTiger session sees others' writes
            try:
                sweep(store)
            except Exception:
                log.exception("TTL sweep failed")
            store.release_thread_snapshot()  # park without pinning a WiredTiger snapshot
    finally:
        # close this thread's session on this thread (see the stock loop's note)
        store._reset_thread_session()


def main() -> None:
    missing = [name for name in NEEDED if not hasattr(wt_storage.Storage, name)]
    if missing:
        sys.exit(f"secantusd_launcher: SecantusDB lacks {', '.join(missing)}: update the sweep")
    log.setLevel(logging.INFO)  # the sweep's reports, whatever --log-level says
    faulthandler.enable()  # a native crash (WiredTiger) leaves every thread's stack in the log
    wt_storage.Storage._ttl_sweep_loop = sweep_loop
    period = os.environ.get(PERIOD_VARIABLE)
    if period:
        stock = server.SecantusDBServer.__init__

        @functools.wraps(stock)
        def with_period(self: Any, *args: Any, **kwargs: Any) -> None:
            stock(self, *args, **{**kwargs, "ttl_sweep_seconds": float(period)})

        setattr(cli.SecantusDBServer, "__init__", with_period)  # noqa: B010
    sys.exit(cli.main(sys.argv[1:]))


if __name__ == "__main__":
    main()
