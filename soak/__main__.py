"""``python -m soak [--minutes N] [--seed S]``: soak the whole system under chaos, then audit it.

Writes ``bench/results/soak.json`` (the benchmark format, plus the seed, the faults and every
violation with its evidence) and exits 1 if the auditor found any violation.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog
from pymongo import MongoClient

from bench.harness import Metric, Result, backend, table, write
from soak import audit, collect, memory
from soak.audit import Bounds, CommandRecord, FaultRecord, Snapshot, Violation
from soak.chaos import KINDS, Chaos, Probe
from soak.load import Load, utcnow
from soak.platform import (
    CANCEL_RESEND_SECONDS,
    DATABASE,
    LEASE_SECONDS,
    PROFILES,
    RECLAIM_INTERVAL_SECONDS,
    REDISPATCH_AFTER_SECONDS,
    SERVICE_SETTINGS,
    Platform,
)

#: How long the system gets, after the load and the chaos stop, to finish what is in flight.
QUIET_WITHIN = 120.0
MAX_LISTED_VIOLATIONS = 200


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("MINUTES") or 10))
    parser.add_argument(
        "--seed",
        type=int,
        default=int(os.environ["SOAK_SEED"]) if os.environ.get("SOAK_SEED") else None,
    )
    parser.add_argument("--rate", type=float, default=3.0, help="commands per second")
    parser.add_argument("--keep", action="store_true", help="keep logs and data afterwards")
    return parser.parse_args()


def say(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", flush=True)


def store_service_settings(mongo_url: str) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_url)
    try:
        services = client[DATABASE].services
        for name, settings in SERVICE_SETTINGS.items():
            services.replace_one({"_id": name}, settings, upsert=True)
    finally:
        client.close()


async def soak(args: argparse.Namespace, work_dir: Path) -> int:
    seed = args.seed
    secret = base64.urlsafe_b64encode(os.urandom(48)).decode()
    platform = Platform(work_dir, secret, seed)
    say(f"SOAK_SEED={seed} minutes={args.minutes:g} rate={args.rate:g}/s work dir {work_dir}")
    await asyncio.to_thread(platform.start_infrastructure)
    await asyncio.to_thread(store_service_settings, platform.env["MONGODB_URL"])
    platform.define_services()
    await asyncio.to_thread(platform.start_services)
    say("infrastructure and services ready: " + ", ".join(platform.services))
    probe = Probe(platform)
    loop = asyncio.get_running_loop()
    started = loop.time()
    samples: list[memory.Sample] = []
    sampler = asyncio.create_task(memory.sample(platform, started, samples))
    load = Load(platform.services["admin-api"].url, secret, seed, args.rate)
    chaos = Chaos(platform, probe, seed, gap=(2.0, 8.0) if args.minutes < 5 else (8.0, 24.0))
    ends = utcnow() + timedelta(minutes=args.minutes)
    exit_codes: dict[str, int | None] = {}
    try:
        await asyncio.gather(load.run(started + args.minutes * 60), chaos.run(ends))
        say(f"load and chaos done: {len(load.commands)} commands, {len(chaos.faults)} faults")
        for service in platform.services.values():
            service.resume()
            if not service.alive():
                service.start()
        for service in platform.services.values():
            await asyncio.to_thread(service.wait_ready)
        heartbeat = min(p["heartbeat_seconds"] for p in PROFILES.values())
        settled, still = await collect.quiet(
            platform.env["MONGODB_URL"],
            platform.env["KAFKA_BOOTSTRAP_SERVERS"],
            probe.lag,
            QUIET_WITHIN,
            heartbeat,
        )
        say("quiet" if settled else f"not quiet after {QUIET_WITHIN:.0f} s: {still}")
        taken_at = utcnow()
        stored = await collect.read_mongo(platform.env["MONGODB_URL"])
        topics = await collect.read_topics(platform.env["KAFKA_BOOTSTRAP_SERVERS"])
        run_seconds = loop.time() - started
    finally:
        sampler.cancel()
        with contextlib.suppress(BaseException):
            await sampler
        await probe.close()
        exit_codes = await asyncio.to_thread(platform.stop)

    snapshot = Snapshot(
        taken_at=taken_at,
        callbacks=stored["callbacks"],
        services=stored["services"],
        slots=stored["slots"],
        counters=stored["counters"],
        open_counts=stored["open_counts"],
        report=stored["report"],
        lifecycle=topics["lifecycle"],
        due=topics["due"],
        routing_events=topics["routing_events"],
        dead_letters=topics["dead_letters"],
        commands=[
            CommandRecord(c.kind, c.callback_id, c.acked_at, c.status, c.detail)
            for c in load.commands
        ],
        faults=[FaultRecord(f.kind, f.target, f.at, f.repaired_at) for f in chaos.faults],
        bounds=Bounds(
            redispatch_after=timedelta(seconds=REDISPATCH_AFTER_SECONDS),
            lease=timedelta(seconds=LEASE_SECONDS),
            reclaim_interval=timedelta(seconds=RECLAIM_INTERVAL_SECONDS),
            cancel_resend=timedelta(seconds=CANCEL_RESEND_SECONDS),
            call_seconds={
                name: p["handle_seconds_max"] + p["dial_seconds"] for name, p in PROFILES.items()
            },
        ),
    )
    violations = audit.audit(snapshot)
    violations += [
        Violation("stop", None, f"{name} exited {code} on SIGTERM (expected 0)", {})
        for name, code in exit_codes.items()
        if code not in (0, None)
    ]
    judge_from = min(120.0, args.minutes * 60 / 2)
    trends, unjudged = memory.trends(samples, judge_from)
    violations += [
        Violation(
            "memory",
            None,
            f"{t.service} (pid {t.pid}) resident memory keeps growing",
            {"trend": asdict(t)},
        )
        for t in trends
        if t.growing
    ]
    result = figures(platform, load, chaos, snapshot, violations, trends, run_seconds)
    path = write(result)
    extra = {
        "seed": seed,
        "minutes": args.minutes,
        "rate_per_second": args.rate,
        "quiet_before_audit": settled,
        "still_in_flight": still,
        "faults": [f.as_json() for f in chaos.faults],
        "violations": [v.as_json() for v in violations[:MAX_LISTED_VIOLATIONS]],
        "memory_trends": [asdict(t) for t in trends],
        "memory_unjudged": unjudged,
        "commands_by_outcome": commands_by_outcome(load),
        "callbacks_by_outcome": callbacks_by_outcome(snapshot),
        "audited": {
            "callbacks": len(snapshot.callbacks),
            "lifecycle_messages": len(snapshot.lifecycle),
            "due_messages": len(snapshot.due),
            "routing_events": len(snapshot.routing_events),
            "slots": len(snapshot.slots),
            "throttle_counters": len(snapshot.counters),
            "report_entries": len(snapshot.report),
            "acknowledged_commands": sum(c.status is not None for c in snapshot.commands),
        },
    }
    body = json.loads(path.read_text())
    path.write_text(json.dumps({**body, **extra}, indent=2, default=str) + "\n")
    print(table(result))
    print(f"-> {path}")
    for v in violations[:30]:
        print(f"VIOLATION [{v.check}] {v.callback_id}: {v.message}")
        print(f"  {json.dumps(v.as_json()['evidence'], default=str)[:1500]}")
    say(f"SOAK_SEED={seed}: {len(violations)} invariant violation(s)")
    return 1 if violations else 0


def commands_by_outcome(load: Load) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in load.commands:
        key = f"{c.kind} {c.status if c.status is not None else 'no answer'}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def callbacks_by_outcome(snapshot: Snapshot) -> dict[str, int]:
    counts: dict[str, int] = {}
    for doc in snapshot.callbacks.values():
        key = doc["state"] + (f"({doc['result']})" if doc.get("result") else "")
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def figures(
    platform: Platform,
    load: Load,
    chaos: Chaos,
    snapshot: Snapshot,
    violations: list[Violation],
    trends: list[memory.Trend],
    run_seconds: float,
) -> Result:
    assert platform.infra is not None
    result = Result("soak", backend(platform.infra))
    m = result.metrics
    m["operations"] = Metric(len(load.commands), "commands", better="higher")
    answered = [c for c in load.commands if c.status is not None]
    m["operations_answered"] = Metric(len(answered), "commands", better="higher")
    m["callbacks"] = Metric(len(snapshot.callbacks), "records", better="higher")
    m["run_seconds"] = Metric(round(run_seconds, 1), "s")
    m["faults_injected"] = Metric(len(chaos.faults), "faults", better="higher")
    for kind in KINDS:
        name = kind.replace(":", "_").replace("-", "_")
        m[f"faults_{name}"] = Metric(
            sum(f.kind == kind for f in chaos.faults), "faults", better="higher"
        )
    m["invariant_violations"] = Metric(len(violations), "violations", target=0)
    for check in sorted({v.check for v in violations}):
        m[f"violations_{check}"] = Metric(
            sum(v.check == check for v in violations), "violations", target=0
        )
    lateness = audit.lateness_ms(snapshot.due)
    m["lateness_p99_ms"] = Metric(round(audit.p99([ms for _, ms in lateness]), 1), "ms")
    m["lateness_p50_ms"] = Metric(round(audit.median([ms for _, ms in lateness]), 1), "ms")
    window = timedelta(seconds=60)
    after = [ms for due, ms in lateness if any(f.at <= due <= f.at + window for f in chaos.faults)]
    m["lateness_p99_after_fault_ms"] = Metric(round(audit.p99(after), 1), "ms")
    m["lateness_samples_after_fault"] = Metric(len(after), "callbacks", better="higher")
    for kind in KINDS:
        took = [f.recovery_seconds for f in chaos.faults if f.kind == kind]
        if took:
            name = kind.replace(":", "_").replace("-", "_")
            known = [t for t in took if t is not None]
            worst = max(known) if len(known) == len(took) else float("inf")
            m[f"recovery_max_s_{name}"] = Metric(round(worst, 1), "s")
    if trends:
        m["rss_slope_max_mib_per_min"] = Metric(
            round(max(t.slope_mib_per_min for t in trends), 2),
            "MiB/min",
            target=memory.MAX_SLOPE_MIB_PER_MIN,
        )
    return result


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the probe meets Kafka restarts
    args = parse()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1_000_000)
    work_dir = Path(tempfile.mkdtemp(prefix="callback-soak-"))
    code = 2
    try:
        code = asyncio.run(soak(args, work_dir))
    finally:
        if args.keep or code != 0:
            say(f"logs and data kept in {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
