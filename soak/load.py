"""A steady mixed load through the admin HTTP API, every command recorded with the time its
answer arrived and its status (the auditor holds the platform to what it acknowledged)."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from callback_admin_api.tokens import mint_token

API = "/api/v1"
ACTOR = "soak-load"
#: Customer numbers per service: few in "slow", so duplicate checks and daily caps bite.
NUMBERS = {"soak-fast": 40, "soak-slow": 12}
#: Operation mix: (name, weight).
MIX = [
    ("create_immediate", 30),
    ("create_scheduled", 24),
    ("reschedule", 14),
    ("cancel", 20),
    ("bulk_cancel", 4),
    ("recreate", 8),
]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Command:
    """One command sent to the admin API and what it answered (``status`` None: no answer)."""

    kind: str
    sent_at: datetime
    callback_id: str | None = None
    acked_at: datetime | None = None
    status: int | None = None
    #: create: desired_time, type, service; reschedule: desired_time; cancel: state asked in;
    #: bulk_cancel: items (id, outcome)
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Known:
    service: str
    type: str
    desired_time: datetime
    created_at: datetime


def number(service: str, n: int) -> str:
    base = 2000 if service == "soak-fast" else 3000
    return f"+1415555{base + n:04d}"


def slot_starts(
    now: datetime, ahead: timedelta = timedelta(seconds=25), count: int = 4
) -> list[datetime]:
    """The next ``count`` one-minute slot starts at least ``ahead`` from now."""
    first = (now + ahead).replace(second=0, microsecond=0) + timedelta(minutes=1)
    return [first + timedelta(minutes=k) for k in range(count)]


class Load:
    def __init__(self, base_url: str, secret: str, seed: int, rate: float) -> None:
        self.base_url = base_url
        self.rng = random.Random(f"load:{seed}")
        self.rate = rate
        token = mint_token(secret, ACTOR, ["callback_supervisor"], ["*"])
        self.headers = {"Authorization": f"Bearer {token}"}
        self.commands: list[Command] = []
        self.known: dict[str, Known] = {}
        self._gate = asyncio.Semaphore(8)

    async def run(self, until: float) -> None:
        """Send commands at ``rate`` per second until the loop time ``until``."""
        loop = asyncio.get_running_loop()
        names = [name for name, _ in MIX]
        weights = [weight for _, weight in MIX]
        tasks: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(base_url=f"{self.base_url}{API}", timeout=15) as http:
            while loop.time() < until:
                op = self.rng.choices(names, weights)[0]
                task = asyncio.create_task(self._guarded(http, op))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                await asyncio.sleep(self.rng.expovariate(self.rate))
            if tasks:
                await asyncio.wait(tasks, timeout=30)

    async def _guarded(self, http: httpx.AsyncClient, op: str) -> None:
        async with self._gate:
            await getattr(self, op)(http)

    async def _send(
        self, http: httpx.AsyncClient, command: Command, method: str, url: str, body: Any = None
    ) -> dict[str, Any] | None:
        self.commands.append(command)
        try:
            response = await http.request(method, url, json=body, headers=self.headers)
        except httpx.HTTPError:
            return None
        command.acked_at, command.status = utcnow(), response.status_code
        try:
            answer = response.json()
        except ValueError:
            return None
        return answer if isinstance(answer, dict) else None

    def _pick(self, predicate: Any = None) -> str | None:
        ids = [i for i, k in self.known.items() if predicate is None or predicate(k)]
        return self.rng.choice(ids) if ids else None

    # --- operations ---------------------------------------------------------------------------

    async def create_immediate(self, http: httpx.AsyncClient) -> None:
        service = self.rng.choice(list(NUMBERS))
        body = {
            "type": "IMMEDIATE",
            "service_name": service,
            "customer_number": number(service, self.rng.randrange(NUMBERS[service])),
            "priority": self.rng.choice([0, 0, 0, 5]),
        }
        await self._create(http, body)

    async def create_scheduled(self, http: httpx.AsyncClient) -> None:
        service = self.rng.choice(list(NUMBERS))
        desired = self.rng.choice(slot_starts(utcnow()))
        body = {
            "type": "SCHEDULED",
            "service_name": service,
            "customer_number": number(service, self.rng.randrange(NUMBERS[service])),
            "desired_time": desired.isoformat(),
        }
        await self._create(http, body)

    async def _create(self, http: httpx.AsyncClient, body: dict[str, Any]) -> None:
        command = Command("create", utcnow(), detail={"type": body["type"]})
        answer = await self._send(http, command, "POST", "/callbacks", body)
        if command.status == 201 and answer:
            self._remember(command, answer)
        if self.rng.random() < 0.25 and command.callback_id and body["type"] == "IMMEDIATE":
            # a cancel racing the dispatch
            await asyncio.sleep(self.rng.uniform(0, 0.5))
            await self._cancel(http, command.callback_id)

    def _remember(self, command: Command, answer: dict[str, Any]) -> None:
        command.callback_id = answer["id"]
        desired = datetime.fromisoformat(answer["desired_time"])
        command.detail.update(desired_time=desired, service=answer["service_name"])
        self.known[answer["id"]] = Known(
            answer["service_name"], answer["type"], desired, command.sent_at
        )

    async def reschedule(self, http: httpx.AsyncClient) -> None:
        now = utcnow()
        callback_id = self._pick(
            lambda k: k.type == "SCHEDULED" and k.desired_time > now + timedelta(seconds=5)
        )
        if callback_id is None:
            return
        known = self.known[callback_id]
        choices = [s for s in slot_starts(now) if s != known.desired_time]
        desired = self.rng.choice(choices)
        command = Command("reschedule", utcnow(), callback_id, detail={"desired_time": desired})
        await self._send(
            http,
            command,
            "POST",
            f"/callbacks/{callback_id}/reschedule",
            {"desired_time": desired.isoformat()},
        )
        if command.status == 200:
            known.desired_time = desired

    async def cancel(self, http: httpx.AsyncClient) -> None:
        callback_id = self._pick()
        if callback_id is not None:
            await self._cancel(http, callback_id)

    async def _cancel(self, http: httpx.AsyncClient, callback_id: str) -> None:
        command = Command("cancel", utcnow(), callback_id)
        answer = await self._send(http, command, "POST", f"/callbacks/{callback_id}/cancel")
        if answer and command.status == 202:
            command.detail["asked_in"] = (answer.get("cancel_request") or {}).get("state")

    async def bulk_cancel(self, http: httpx.AsyncClient) -> None:
        """The open callbacks of one minute of one service: an upcoming slot, or the current
        minute (immediate callbacks routing may hold: asked of routing)."""
        now = utcnow()
        service = self.rng.choice(list(NUMBERS))
        current = now.replace(second=0, microsecond=0)
        start = self.rng.choice([current, *slot_starts(now)[:2]])
        body = {
            "all_in_range": {
                "from": start.isoformat(),
                "to": (start + timedelta(minutes=1)).isoformat(),
                "service": [service],
            }
        }
        command = Command("bulk_cancel", utcnow(), detail={"range_start": start})
        answer = await self._send(http, command, "POST", "/callbacks/bulk-cancel", body)
        if answer and command.status == 200:
            command.detail["batch_id"] = answer.get("batch_id")
            command.detail["items"] = [
                (item["id"], item["outcome"]) for item in answer.get("items", [])
            ]
            command.detail["truncated"] = answer.get("truncated", False)

    async def recreate(self, http: httpx.AsyncClient) -> None:
        old = utcnow() - timedelta(seconds=20)
        callback_id = self._pick(lambda k: k.created_at < old)
        if callback_id is None:
            return
        command = Command("recreate", utcnow(), detail={"from": callback_id, "type": "IMMEDIATE"})
        answer = await self._send(
            http, command, "POST", f"/callbacks/{callback_id}/recreate", {"type": "IMMEDIATE"}
        )
        if command.status == 201 and answer:
            self._remember(command, answer)
