"""What every service process shares: connections, readiness, health/metrics HTTP, clean stop.

A service builds a :class:`ServiceRuntime`, registers its Kafka subscribers on ``runtime.broker``
and its background loops with :meth:`ServiceRuntime.on_ready`, then calls :func:`serve`. The
HTTP server answers ``/healthz`` at once; dependencies are connected in the background with
backoff, and ``/readyz`` turns 200 only while MongoDB and Kafka both answer. SIGTERM stops the
background loops, lets in-flight messages finish, and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import FrameType
from typing import Any

import structlog
import uvicorn
from aiokafka import ConsumerRecord
from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from pymongo import IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    wait_exponential_jitter,
)

from callback_shared.kafka import (
    KafkaAccessDenied,
    check_kafka_access,
    ensure_topics,
    make_broker,
    raw_body,
)
from callback_shared.log import configure_logging
from callback_shared.mongo import (
    CollectionIndexes,
    Document,
    MongoAccessDenied,
    check_mongo_access,
    database,
    ensure_indexes,
    make_mongo_client,
)
from callback_shared.settings import CONFIG_ERROR_EXIT_CODE, PlatformSettings

ReadyHook = Callable[["ServiceRuntime"], Awaitable[None]]
BatchHandler = Callable[[Sequence[ConsumerRecord[Any, Any]]], Awaitable[None]]

#: Pause before a batch that failed (MongoDB or Kafka down) is delivered again.
BATCH_RETRY_PAUSE_SECONDS = 1.0

READY = Gauge("callback_service_ready", "1 while the service's dependencies answer", ["service"])


log = structlog.get_logger(__name__)


async def keep_running(
    step: Callable[[], Awaitable[object]], interval: float, failure: str
) -> None:
    """Run ``step`` every ``interval`` seconds for ever (a background loop: outbox relays);
    its errors (Kafka or MongoDB down) are logged with ``failure`` and retried."""
    while True:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(failure)
        await asyncio.sleep(interval)


class ServiceRuntime:
    def __init__(self, name: str, settings: PlatformSettings, *, title: str | None = None) -> None:
        self.name = name
        self.settings = settings
        self.log = structlog.get_logger(name)
        self.broker: KafkaBroker = make_broker(settings, client_id=name)
        self.mongo = make_mongo_client(settings)
        self.db: AsyncDatabase[Document] = database(self.mongo, settings)
        self.connected = asyncio.Event()
        #: set when the service begins to stop (SIGTERM, or the app's shutdown): long-lived
        #: responses (live updates) end on it, so the HTTP server does not wait for them
        self.stopping = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready_hooks: list[ReadyHook] = []
        self._stop_hooks: list[ReadyHook] = []
        self._tasks: set[asyncio.Task[Any]] = set()  # running ones: a task leaves when done
        self._indexes: dict[str, Sequence[IndexModel]] = {}
        self.app = FastAPI(title=title or name, lifespan=self._lifespan)
        self._add_probes()

    def create_indexes(self, collections: CollectionIndexes) -> None:
        """Create these indexes (the service's own collections, and the shared ones it uses)
        when connecting, before the service turns ready; the callbacks collection's always."""
        self._indexes.update(collections)

    def on_ready(self, hook: ReadyHook) -> ReadyHook:
        """Run ``hook`` once dependencies are connected (e.g. start a background loop)."""
        self._ready_hooks.append(hook)
        return hook

    def on_stop(self, hook: ReadyHook) -> ReadyHook:
        """Run ``hook`` on SIGTERM before anything is cancelled (e.g. finish in-flight work);
        together the stop hooks get ``shutdown_grace_seconds``."""
        self._stop_hooks.append(hook)
        return hook

    def consume_batches(
        self, topic: str, group_id: str, max_records: int, handler: BatchHandler
    ) -> None:
        """Feed ``handler`` the raw records of ``topic`` in batches, at least once: a batch's
        offsets are committed only after ``handler`` returned; if it raises, the batch comes
        again after a pause (a crash, even ``kill -9``, delivers it again too). The handler
        parses the records itself and parks what is malformed (see :func:`~.kafka.raw_body`).
        """

        @self.broker.subscriber(
            topic,
            group_id=group_id,
            auto_offset_reset="earliest",
            batch=True,
            max_records=max_records,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            decoder=raw_body,
            title=f"{self.name}:{topic}",
        )
        async def consume(body: Any, message: KafkaMessage) -> None:
            try:
                await handler(message.raw_message)
            except Exception:
                self.log.exception("batch not applied; it will be delivered again", topic=topic)
                await asyncio.sleep(BATCH_RETRY_PAUSE_SECONDS)
                raise

    async def join(self, name: str) -> None:
        """Wait for the spawned task called ``name`` to end by itself."""
        tasks = [task for task in self._tasks if task.get_name() == name]
        await asyncio.gather(*tasks, return_exceptions=True)

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        """A background task cancelled on shutdown; a crash is logged, never silent."""
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        task.add_done_callback(self._report_crash)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _report_crash(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.log.error(
                "background task crashed", task=task.get_name(), exc_info=task.exception()
            )

    async def _connect(self) -> None:
        try:
            await self._connect_with_backoff()
        except (KafkaAccessDenied, MongoAccessDenied) as exc:
            # a wrong password or an untrusted certificate: retrying cannot help; one line, and
            # the process ends (the HTTP server is not stopped cleanly: nothing is connected)
            self.log.error(f"cannot start: {exc}")
            os._exit(CONFIG_ERROR_EXIT_CODE)

    async def _connect_with_backoff(self) -> None:
        async for attempt in AsyncRetrying(
            wait=wait_exponential_jitter(multiplier=0.2, max=5),
            retry=retry_if_exception_type(Exception)
            & retry_if_not_exception_type((KafkaAccessDenied, MongoAccessDenied)),
            before_sleep=lambda state: self.log.warning(
                "dependencies not reachable yet, retrying",
                attempt=state.attempt_number,
                error=repr(state.outcome.exception()) if state.outcome else None,
            ),
        ):
            with attempt:
                await check_mongo_access(self.mongo)
                await ensure_indexes(self.db, self._indexes)
                await check_kafka_access(self.settings)
                await ensure_topics(self.settings, self.name)
                try:
                    await self.broker.start()
                except Exception:
                    await self.broker.stop()
                    raise
        for hook in self._ready_hooks:
            await hook(self)
        self.connected.set()
        self.log.info("service ready")

    def request_stop(self) -> None:
        """Set :attr:`stopping` (safe from a signal handler)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.stopping.set)

    async def is_ready(self) -> dict[str, bool]:
        checks = {"started": self.connected.is_set(), "mongodb": False, "kafka": False}
        if checks["started"]:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.mongo.admin.command("ping"), 2)
                checks["mongodb"] = True
            with contextlib.suppress(Exception):
                checks["kafka"] = await self.broker.ping(timeout=2)
        return checks

    @contextlib.asynccontextmanager
    async def _lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        self.log.info("service starting", http_port=self.settings.http_port)
        self._loop = asyncio.get_running_loop()
        connect = asyncio.create_task(self._connect(), name="connect")
        try:
            yield
        finally:
            self.log.info("service stopping")
            self.stopping.set()
            connect.cancel()
            if self.connected.is_set() and self._stop_hooks:
                try:
                    async with asyncio.timeout(self.settings.shutdown_grace_seconds):
                        for hook in self._stop_hooks:
                            await hook(self)
                except Exception:
                    self.log.exception("in-flight work did not finish cleanly")
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(connect, *self._tasks, return_exceptions=True)
            await self.broker.stop()
            await self.mongo.close()
            READY.labels(self.name).set(0)
            self.log.info("service stopped")

    def _add_probes(self) -> None:
        @self.app.get("/healthz", include_in_schema=False)
        async def healthz() -> dict[str, str]:
            return {"status": "ok"}

        @self.app.get("/readyz", include_in_schema=False)
        async def readyz() -> JSONResponse:
            checks = await self.is_ready()
            ready = all(checks.values())
            READY.labels(self.name).set(int(ready))
            return JSONResponse(
                {"status": "ready" if ready else "not ready", "checks": checks},
                status_code=200 if ready else 503,
            )

        @self.app.get("/metrics", include_in_schema=False)
        async def metrics() -> PlainTextResponse:
            return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)


#: How long an idle HTTP connection is kept open: longer than the clients' and load balancers'
#: own (httpx 5 s, cloud load balancers 60 s), so the client, not the service, closes an idle
#: one; a service closing first races the client's next request on it, which then fails
#: ("server disconnected without sending a response", or a 502 from the balancer).
KEEP_ALIVE_SECONDS = 75


def serve(runtime: ServiceRuntime) -> None:
    """Serve the runtime's app until SIGTERM/SIGINT; returns normally (exit code 0)."""
    settings = runtime.settings
    config = uvicorn.Config(
        runtime.app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        # C event loop and HTTP parser: a fifth less CPU per create than asyncio's loop and h11
        # (docs/performance.md); the benchmarks run their raw drivers on the same loop
        loop="uvloop",
        http="httptools",
        lifespan="on",
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
    )
    # uvicorn re-raises the signal it stopped on once it is done; the graceful stop it just made
    # is a normal end, so SIGTERM then means exit code 0.
    signal.signal(signal.SIGTERM, _exit_normally)
    _Server(config, runtime).run()


class _Server(uvicorn.Server):
    """uvicorn waits for open responses to end before the app's shutdown runs: the runtime
    hears of the stop at once (:attr:`ServiceRuntime.stopping`), so streams end first."""

    def __init__(self, config: uvicorn.Config, runtime: ServiceRuntime) -> None:
        super().__init__(config)
        self.runtime = runtime

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self.runtime.request_stop()


def _exit_normally(signum: int, frame: object) -> None:
    raise SystemExit(0)


def run_service(
    name: str, settings: PlatformSettings, build: Callable[[ServiceRuntime], None]
) -> None:
    """The whole ``main`` of a service: logging, runtime, the service's own wiring, serve."""
    configure_logging(name, settings)
    runtime = ServiceRuntime(name, settings)
    build(runtime)
    runtime.on_ready(freeze_start_up)
    serve(runtime)


async def freeze_start_up(runtime: ServiceRuntime) -> None:
    """Keep what start-up made (modules, schemas, clients: it lives as long as the process) out
    of the garbage collector's full collections, which would otherwise walk it all again and
    again while messages flow (measured: README.md, CPU per operation)."""
    gc.collect()
    gc.freeze()
