"""Resident memory of every service process, sampled from /proc, and a tolerant growth test."""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from soak.platform import Platform

SAMPLE_EVERY = 5.0
#: A process is not judged on its first minute (imports, caches, connection pools warm up).
WARM_UP = 60.0
#: At least this long of samples after the warm-up for a verdict.
MIN_SPAN = 60.0
#: Growing: the robust slope above this AND the growth it implies over the span above
#: MIN_GROWTH_MIB (a fraction of a MiB per minute is allocator noise).
MAX_SLOPE_MIB_PER_MIN = 2.0
MIN_GROWTH_MIB = 16.0


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the run started
    service: str
    pid: int
    rss_mib: float


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


async def sample(platform: Platform, started: float, samples: list[Sample]) -> None:
    """Sample every service's RSS until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        for name, service in platform.services.items():
            pid = service.pid
            if pid is not None and service.alive():
                rss = rss_mib(pid)
                if rss is not None:
                    samples.append(Sample(loop.time() - started, name, pid, rss))
        await asyncio.sleep(SAMPLE_EVERY)


def theil_sen(points: list[tuple[float, float]]) -> float:
    """The median of the pairwise slopes: one jump (a GC, a burst) does not make a trend."""
    slopes = [(y2 - y1) / (x2 - x1) for (x1, y1), (x2, y2) in combinations(points, 2) if x2 > x1]
    return statistics.median(slopes) if slopes else 0.0


@dataclass(frozen=True)
class Trend:
    service: str
    pid: int
    start: float
    end: float
    first_mib: float
    last_mib: float
    slope_mib_per_min: float

    @property
    def growing(self) -> bool:
        growth = self.slope_mib_per_min * (self.end - self.start) / 60
        return self.slope_mib_per_min > MAX_SLOPE_MIB_PER_MIN and growth > MIN_GROWTH_MIB


def trends(samples: list[Sample], judge_from: float) -> tuple[list[Trend], list[str]]:
    """The trend of each process (a service's incarnation between restarts) over its samples
    from ``judge_from`` (and past its warm-up); and the processes too short-lived to judge."""
    by_process: dict[tuple[str, int], list[Sample]] = {}
    for s in samples:
        by_process.setdefault((s.service, s.pid), []).append(s)
    found, unjudged = [], []
    for (service, pid), series in by_process.items():
        born = series[0].at
        kept = [s for s in series if s.at >= max(judge_from, born + WARM_UP)]
        if len(kept) < 6 or kept[-1].at - kept[0].at < MIN_SPAN:
            unjudged.append(f"{service} (pid {pid})")
            continue
        slope = theil_sen([(s.at, s.rss_mib) for s in kept]) * 60
        found.append(
            Trend(service, pid, kept[0].at, kept[-1].at, kept[0].rss_mib, kept[-1].rss_mib, slope)
        )
    return found, unjudged
