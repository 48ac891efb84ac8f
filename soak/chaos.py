"""The chaos loop: seeded, logged faults, one at a time, each followed by a measured recovery.

Fault kinds: ``kill:<service>`` (``kill -9``, then a restart with the same settings),
``restart:kafka`` and ``restart:mongodb`` (stopped, down a few seconds, started again on the
same data and port), ``pause:scheduler-leader`` (SIGSTOP of the replica holding the lease for
longer than the lease, then SIGCONT). Recovery: from the fault until the service is ready and
its backlog drained (:class:`Probe`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

from soak.collect import partitions
from soak.load import utcnow
from soak.platform import DATABASE, LEASE_SECONDS, TOPICS, Platform

log = structlog.get_logger("soak.chaos")

KINDS = [
    "kill:admin-api",
    "kill:scheduler",
    "kill:state-tracker",
    "kill:routing-sim",
    "kill:exporter",
    "restart:kafka",
    "restart:mongodb",
    "pause:scheduler-leader",
]
#: Consumer groups (the services' defaults) and the topics each reads.
GROUPS = {
    "state-tracker": ["TOPIC_ROUTING_EVENTS"],
    "routing-sim": ["TOPIC_DUE_CALLBACKS", "TOPIC_ROUTING_COMMANDS"],
    "exporter": ["TOPIC_LIFECYCLE_EVENTS"],
}
RECOVERY_TIMEOUT = 120.0
#: Leave this long at the end of the run without a new fault (the last one recovers).
QUIET_END = timedelta(seconds=15)


@dataclass
class Fault:
    kind: str
    target: str
    at: datetime
    pid: int | None = None
    repaired_at: datetime | None = None
    recovered_at: datetime | None = None
    note: str = ""

    @property
    def recovery_seconds(self) -> float | None:
        if self.recovered_at is None:
            return None
        return (self.recovered_at - self.at).total_seconds()

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target,
            "pid": self.pid,
            "at": self.at.isoformat(),
            "repaired_at": self.repaired_at.isoformat() if self.repaired_at else None,
            "recovered_at": self.recovered_at.isoformat() if self.recovered_at else None,
            "recovery_s": self.recovery_seconds,
            "note": self.note,
        }


class Probe:
    """Readiness and backlogs: consumer lag per group, due callbacks not taken, outboxes."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        env = platform.env
        self.bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
        self.mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            env["MONGODB_URL"], tz_aware=True, uuidRepresentation="standard",
            serverSelectionTimeoutMS=2000,
        )  # fmt: skip
        self.db = self.mongo[DATABASE]
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def close(self) -> None:
        await self.mongo.close()
        await self._disconnect()

    async def _disconnect(self) -> None:
        for client in (self._consumer, self._admin):
            if client is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await (
                        client.stop() if isinstance(client, AIOKafkaConsumer) else client.close()
                    )
        self._consumer = self._admin = None

    async def lag(self, group: str) -> int:
        """Messages of the group's topics its consumers have not committed yet."""
        try:
            if self._consumer is None or self._admin is None:
                self._admin = AIOKafkaAdminClient(
                    bootstrap_servers=self.bootstrap, request_timeout_ms=3000
                )
                await self._admin.start()
                self._consumer = AIOKafkaConsumer(
                    bootstrap_servers=self.bootstrap, request_timeout_ms=3000
                )
                await self._consumer.start()
            parts = await partitions(self._admin, [TOPICS[t] for t in GROUPS[group]])
            if not parts:
                raise RuntimeError(f"no partitions known for the topics of {group}")
            ends = await self._consumer.end_offsets(parts)
            committed = await self._admin.list_consumer_group_offsets(group)
        except Exception:
            await self._disconnect()
            raise
        total = 0
        for part, end in ends.items():
            meta = committed.get(part)
            total += end - (meta.offset if meta is not None and meta.offset >= 0 else 0)
        return total

    async def due_not_taken(self) -> int:
        """Callbacks due more than a few seconds ago that routing has not taken."""
        cutoff = utcnow() - timedelta(seconds=3)
        return await self.db.callbacks.count_documents({"dispatch_at": {"$lte": cutoff}})

    async def outbox_waiting(self) -> int:
        cutoff = utcnow() - timedelta(seconds=3)
        return await self.db.callbacks.count_documents({"outbox_since": {"$lte": cutoff}})

    async def leader_pid(self) -> int | None:
        lease = await self.db.scheduler_leases.find_one({"_id": "scheduler"})
        if lease is None or lease["expires_at"] <= utcnow():
            return None
        with contextlib.suppress(ValueError, IndexError):
            return int(lease["holder"].rsplit("-", 2)[1])
        return None

    async def drained(self, kind: str, target: str) -> bool:
        """Whether the faulted part is ready and its backlog drained (for Kafka and MongoDB:
        every service and every backlog)."""
        services = self.platform.services
        if kind.startswith("restart:"):
            names = list(services)
        elif target.startswith("scheduler"):
            names = [n for n in services if n.startswith("scheduler") and not services[n].paused]
        else:
            names = [target]
        ready = await asyncio.gather(*(asyncio.to_thread(services[n].ready) for n in names))
        if not all(ready):
            return False
        try:
            checks: list[str] = (
                ["scheduler", "admin-api", *GROUPS] if kind.startswith("restart:") else [target]
            )
            for check in checks:
                if check.startswith("scheduler"):
                    if await self.due_not_taken():
                        return False
                    paused = [s.pid for s in services.values() if s.paused]
                    leader = await self.leader_pid()
                    if leader is None or leader in paused:
                        return False
                elif check == "admin-api":
                    if await self.outbox_waiting():
                        return False
                elif check in GROUPS and await self.lag(check):
                    return False
        except Exception:
            return False
        return True


@dataclass
class Chaos:
    platform: Platform
    probe: Probe
    seed: int
    #: pause between two faults (seconds, drawn uniformly): longer in a long run, so each process
    #: lives long enough for its memory trend to be judged
    gap: tuple[float, float] = (2.0, 8.0)
    faults: list[Fault] = field(default_factory=list)

    async def run(self, until: datetime) -> None:
        rng = random.Random(f"chaos:{self.seed}")
        while True:
            order = list(KINDS)
            rng.shuffle(order)
            for kind in order:
                await asyncio.sleep(rng.uniform(*self.gap))
                if utcnow() + QUIET_END > until:
                    return
                await self.inject(kind, rng)

    async def inject(self, kind: str, rng: random.Random) -> Fault:
        services = self.platform.services
        action, what = kind.split(":")
        if action == "kill":
            target = rng.choice(["scheduler-1", "scheduler-2"]) if what == "scheduler" else what
            service = services[target]
            fault = Fault(kind, target, utcnow(), pid=service.pid)
            self.faults.append(fault)
            log.warning("fault: kill -9", target=target, pid=service.pid)
            await asyncio.to_thread(service.kill9)
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            await asyncio.to_thread(service.start)
            fault.repaired_at = utcnow()
        elif action == "restart":
            down = rng.uniform(1.0, 5.0)
            fault = Fault(kind, what, utcnow(), note=f"down {down:.1f} s before start")
            self.faults.append(fault)
            log.warning("fault: restart", target=what, down_seconds=round(down, 1))
            restart = (
                self.platform.restart_kafka if what == "kafka" else self.platform.restart_mongodb
            )
            await asyncio.to_thread(restart, down)
            fault.repaired_at = utcnow()
        else:
            return await self.pause_leader(kind, rng)
        await self.await_recovery(fault)
        return fault

    async def pause_leader(self, kind: str, rng: random.Random) -> Fault:
        services = self.platform.services
        leader_pid = await self.probe.leader_pid()
        target = next(
            (n for n, s in services.items() if n.startswith("scheduler") and s.pid == leader_pid),
            "scheduler-1",
        )
        paused_for = LEASE_SECONDS * 2 + rng.uniform(0, 4)
        service = services[target]
        fault = Fault(
            kind,
            target,
            utcnow(),
            pid=service.pid,
            note=f"SIGSTOP for {paused_for:.1f} s (lease {LEASE_SECONDS:g} s)"
            + ("" if leader_pid == service.pid else "; leader unknown, paused scheduler-1"),
        )
        self.faults.append(fault)
        log.warning("fault: pause", target=target, pid=service.pid, seconds=round(paused_for, 1))
        service.pause()
        recovery = asyncio.create_task(self.await_recovery(fault))
        await asyncio.sleep(paused_for)
        service.resume()
        fault.repaired_at = utcnow()
        await recovery
        return fault

    async def await_recovery(self, fault: Fault) -> None:
        deadline = asyncio.get_running_loop().time() + RECOVERY_TIMEOUT
        while asyncio.get_running_loop().time() < deadline:
            if await self.probe.drained(fault.kind, fault.target):
                fault.recovered_at = utcnow()
                log.warning(
                    "recovered", kind=fault.kind, target=fault.target,
                    seconds=round(fault.recovery_seconds or 0, 1),
                )  # fmt: skip
                return
            await asyncio.sleep(0.5)
        log.error("no recovery", kind=fault.kind, target=fault.target)
