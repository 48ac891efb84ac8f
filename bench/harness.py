"""What every benchmark shares: real infrastructure, the machine's description, result files.

A benchmark is a module ``bench/<name>.py`` with ``async def run(infra) -> Result``. It measures
against the real Kafka/MongoDB it is given and, where the backend dominates, reports the ratio to
the raw driver doing the same work in the same run. Results go to ``bench/results/<name>.json``:
``{"name", "machine", "backend", "metrics": {"<metric>": {"value", "unit", "target", "better"}}}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Literal

from callback_dev.infra import KAFKA_VERSION, Infrastructure

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


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) a process has used so far: ``pid`` read from ``/proc`` (a
    service run as a subprocess), or this process itself. Read before and after a measured
    phase; the difference divided by the operations is the CPU per operation."""
    if pid is None:
        return time.process_time()
    with open(f"/proc/{pid}/stat") as stat:
        # the command may contain spaces: fields count from after its closing parenthesis
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)


@dataclass
class CpuMeter:
    """CPU time of one process over a measured phase: ``start()``, the work, ``stop()``, then
    ``per(n)`` milliseconds per operation (and ``seconds``, the phase's wall time)."""

    pid: int | None = None
    used: float = 0.0
    seconds: float = 0.0
    _started: tuple[float, float] | None = None

    def start(self) -> CpuMeter:
        self._started = (cpu_seconds(self.pid), time.monotonic())
        return self

    def stop(self) -> float:
        if self._started is None:
            raise RuntimeError("not started")
        cpu, wall = self._started
        self.used += cpu_seconds(self.pid) - cpu
        self.seconds += time.monotonic() - wall
        self._started = None
        return self.used

    def per(self, operations: int) -> float:
        """Milliseconds of CPU per operation."""
        return self.used * 1000 / operations

    def per_less_idle(self, operations: int, idle_ms_per_s: float) -> float:
        """Milliseconds of CPU per operation once the process's idle cost over the phase's
        wall time (``idle_ms_per_s`` times ``seconds``) is taken out: what the operations
        themselves cost."""
        return max(0.0, self.used * 1000 - idle_ms_per_s * self.seconds) / operations


#: Shortest idle interval measured (the kernel counts CPU time in ticks of 10 ms), and the
#: longest (a rate: it need not last as long as a long phase).
MIN_IDLE_SECONDS, MAX_IDLE_SECONDS = 10.0, 30.0


async def idle_cpu_ms_per_s(pid: int, seconds: float) -> float:
    """Milliseconds of CPU per second a service process uses while it has nothing to do
    (polling, heartbeats, metrics, lease renewals), over ``seconds`` (the phase's wall time,
    within :data:`MIN_IDLE_SECONDS` and :data:`MAX_IDLE_SECONDS`): measure it after the phase."""
    seconds = min(max(seconds, MIN_IDLE_SECONDS), MAX_IDLE_SECONDS)
    meter = CpuMeter(pid).start()
    await asyncio.sleep(seconds)
    meter.stop()
    return meter.used * 1000 / meter.seconds


def cpu_metrics(
    operation: str,
    meter: CpuMeter,
    operations: int,
    idle_ms_per_s: float,
    raw: CpuMeter,
    target: float | None = None,
) -> dict[str, Metric]:
    """``cpu_ms_per_<operation>`` (all the process used over the phase),
    ``cpu_ms_per_<operation>_less_idle`` (without its idle cost over the phase's wall time,
    which grows as a slower server stretches the phase), ``raw_cpu_ms_per_<operation>`` (the
    raw drivers doing the same database and Kafka work, in the benchmark's process) and
    ``cpu_ms_per_<operation>_ours`` = less idle, less the raw drivers' share: what this code
    itself spends per operation, whatever the server's speed; the target applies to it. Below
    zero, the run could not tell ours from the drivers' share (the machine's speed drifted more
    than ours between the two phases): the figure stays negative, and no target is judged."""
    less_idle, drivers = meter.per_less_idle(operations, idle_ms_per_s), raw.per(operations)
    ours = less_idle - drivers
    return {
        f"cpu_ms_per_{operation}": Metric(meter.per(operations), "ms"),
        f"cpu_ms_per_{operation}_less_idle": Metric(less_idle, "ms"),
        f"raw_cpu_ms_per_{operation}": Metric(drivers, "ms"),
        f"cpu_ms_per_{operation}_ours": Metric(ours, "ms", target=target if ours >= 0 else None),
    }


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
