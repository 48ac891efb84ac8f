"""Bulk cancel of 100k callbacks through the admin API (the "Cancel All Callbacks In Current
Time Range" job), beside a raw PyMongo ``update_many`` of as many documents of the same shape in
the same collection on the same server, in the same run; and the delay from the job's last
cancellation to the complete Cancellation Summary Report built by the real exporter process."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager
from callback_admin_api.main import build
from callback_admin_api.settings import AdminApiSettings
from callback_admin_api.tokens import mint_token
from callback_dev.infra import Infrastructure, free_port
from callback_shared.documents import DISPATCH_FIELDS
from callback_shared.models import utcnow
from callback_shared.mongo import CALLBACKS, CANCELLATION_REPORT
from callback_shared.runtime import ServiceRuntime

from bench.common import callback_documents, insert, isolated_settings, prepare
from bench.harness import Metric, Result, backend

COUNT = int(os.environ.get("BENCH_BULK_CANCEL_COUNT", "100000"))
SECRET = secrets.token_urlsafe(48)
ACTOR = "bench-supervisor"


async def run(infra: Infrastructure) -> Result:
    settings = isolated_settings(AdminApiSettings, infra, jwt_secret=SECRET)
    db = await prepare(settings)
    start = utcnow() + timedelta(days=2)
    spread = [start + timedelta(seconds=n % 36_000) for n in range(COUNT)]
    await insert(db, callback_documents(spread, service_name="bulk"))
    await insert(db, callback_documents(spread, service_name="raw"))

    exporter_env = {
        **os.environ,
        **{name.upper(): str(value) for name, value in settings.model_dump().items()},
        "HTTP_PORT": str(free_port()),
        "LOG_LEVEL": "WARNING",
    }
    exporter_env.pop("JWT_SECRET", None)
    exporter = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "callback-exporter"), env=exporter_env
    )
    runtime = ServiceRuntime("admin-api", settings)
    build(runtime)
    token = mint_token(SECRET, ACTOR, ["callback_supervisor"], ["bulk"])
    auth = {"Authorization": f"Bearer {token}"}
    body = {
        "all_in_range": {
            "from": start.isoformat(),
            "to": (start + timedelta(days=1)).isoformat(),
            "service": ["bulk"],
        }
    }
    try:
        async with LifespanManager(runtime.app, startup_timeout=300, shutdown_timeout=60):
            await asyncio.wait_for(runtime.connected.wait(), 300)
            transport = httpx.ASGITransport(app=runtime.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://api", timeout=120
            ) as client:
                started = time.perf_counter()
                accepted = await client.post(
                    "/api/v1/callbacks/bulk-cancel", json=body, headers=auth
                )
                if accepted.status_code != 202:
                    raise RuntimeError(f"bulk cancel not accepted as a job: {accepted.text}")
                job_url = f"/api/v1/callbacks/bulk-cancel/{accepted.json()['batch_id']}"
                while True:
                    job = (await client.get(job_url, headers=auth)).json()
                    if job["state"] != "running":
                        break
                    await asyncio.sleep(0.5)
                bulk_cancel_s = time.perf_counter() - started
                finished = time.perf_counter()
        if job["state"] != "done" or job["cancelled"] != COUNT:
            raise RuntimeError(f"job ended {job['state']} with {job['cancelled']} cancelled")

        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            if await db[CANCELLATION_REPORT].count_documents({"actor": ACTOR}) >= COUNT:
                break
            await asyncio.sleep(0.25)
        else:
            raise RuntimeError("the report did not list every cancellation within 30 minutes")
        report_delay_s = time.perf_counter() - finished
    finally:
        exporter.terminate()
        await asyncio.wait_for(exporter.wait(), 60)

    started = time.perf_counter()
    raw = await db[CALLBACKS].update_many(
        {"service_name": "raw", "state": "SCHEDULED"},
        {
            "$set": {
                "state": "COMPLETED",
                "result": "CANCELLED_BY_ADMIN",
                "completed_at": utcnow(),
                "updated_at": utcnow(),
            },
            "$unset": dict.fromkeys(DISPATCH_FIELDS, ""),
        },
    )
    raw_s = time.perf_counter() - started
    if raw.modified_count != COUNT:
        raise RuntimeError(f"raw update_many changed {raw.modified_count} of {COUNT}")
    await db.client.drop_database(settings.mongodb_database)

    result = Result("bulk_cancel", backend=f"{backend(infra)}; {COUNT} callbacks")
    result.metrics = {
        "bulk_cancel_s": Metric(bulk_cancel_s, "s"),
        "raw_update_many_s": Metric(raw_s, "s"),
        "time_ratio_vs_raw": Metric(bulk_cancel_s / raw_s, "x", target=2),
        "report_delay_s": Metric(report_delay_s, "s", target=5),
        "cancels_per_s": Metric(COUNT / bulk_cancel_s, "1/s", better="higher"),
    }
    return result
