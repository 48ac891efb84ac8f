"""What every benchmark shares: real infrastructure, the machine's description, result files.

A benchmark is a module ``bench/<name>.py`` with ``async def run(infra) -> Result``. It measures
against the real Kafka/MongoDB it is given and, where the backend dominates, reports the ratio to
the raw driver doing the same work in the same run. Results go to ``bench/results/<name>.json``:
``{"name", "machine", "backend", "metrics": {"<metric>": {"value", "unit", "target", "better"}}}``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Literal

from callback_shared.infra import KAFKA_VERSION, Infrastructure

RESULTS = Path(__file__).parent / "results"


@dataclass
class Metric:
    value: float
    unit: str
    target: float | None = None
    better: Literal["lower", "higher"] = "lower"

    def meets_target(self) -> bool | None:
        if self.target is None:
            return None
        return self.value <= self.target if self.better == "lower" else self.value >= self.target


@dataclass
class Result:
    name: str
    backend: str
    metrics: dict[str, Metric] = field(default_factory=dict)
    machine: str = field(default_factory=lambda: machine())


def machine() -> str:
    memory = ""
    try:
        with open("/proc/meminfo") as meminfo:
            kib = int(meminfo.readline().split()[1])
            memory = f", {kib / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    cpu = platform.processor() or platform.machine()
    python = platform.python_version()
    return f"{platform.system()} {cpu}, {os.cpu_count()} cores{memory}, Python {python}"


def backend(infra: Infrastructure) -> str:
    if infra.source == "local processes":
        sweep = os.environ.get("SECANTUS_TTL_SWEEP_SECONDS")
        return (
            f"Apache Kafka {KAFKA_VERSION} (KRaft, single node) + SecantusDB "
            f"{version('secantusdb')} (MongoDB wire protocol), local processes on this machine"
            + (f"; server TTL sweep every {sweep} s" if sweep else "")
        )
    return f"Kafka + MongoDB from {infra.source}"


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values)


def write(result: Result) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{result.name}.json"
    body = {
        "name": result.name,
        "machine": result.machine,
        "backend": result.backend,
        "metrics": {name: asdict(metric) for name, metric in result.metrics.items()},
    }
    path.write_text(json.dumps(body, indent=2) + "\n")
    return path


def table(result: Result) -> str:
    lines = [
        f"{result.name} — {result.machine} — {result.backend}",
        f"{'metric':32} {'value':>14} {'unit':8} {'target':>10}  met",
    ]
    for name, metric in result.metrics.items():
        target = (
            ""
            if metric.target is None
            else f"{'≤' if metric.better == 'lower' else '≥'}{metric.target:g}"
        )
        met = {True: "yes", False: "NO", None: ""}[metric.meets_target()]
        lines.append(f"{name:32} {metric.value:14.3f} {metric.unit:8} {target:>10}  {met}")
    return "\n".join(lines)
