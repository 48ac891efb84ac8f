"""The benchmarks' CPU-per-operation arithmetic: "ours" is what the process spent beyond its idle
cost and the raw drivers' share, and a run that cannot separate them judges no target."""

from __future__ import annotations

from bench.harness import CpuMeter, cpu_metrics


def measured(used_seconds: float, wall_seconds: float) -> CpuMeter:
    meter = CpuMeter()
    meter.used, meter.seconds = used_seconds, wall_seconds
    return meter


def test_ours_is_less_idle_less_the_drivers_share() -> None:
    # 1,000 operations: 3 s of CPU over 10 s, idle 100 ms/s (1 s of it), raw drivers 0.5 s
    metrics = cpu_metrics("create", measured(3.0, 10.0), 1000, 100.0, measured(0.5, 2.0), 2.0)
    assert metrics["cpu_ms_per_create"].value == 3.0
    assert metrics["cpu_ms_per_create_less_idle"].value == 2.0
    assert metrics["raw_cpu_ms_per_create"].value == 0.5
    ours = metrics["cpu_ms_per_create_ours"]
    assert ours.value == 1.5
    assert ours.meets_target() is True
    above = cpu_metrics("create", measured(5.0, 10.0), 1000, 100.0, measured(0.5, 2.0), 2.0)
    assert above["cpu_ms_per_create_ours"].meets_target() is False


def test_a_run_that_cannot_tell_ours_from_the_drivers_judges_no_target() -> None:
    # the raw drivers' share came out larger than the process's own work (the machine drifted)
    metrics = cpu_metrics("dispatch", measured(0.8, 10.0), 10_000, 10.0, measured(0.75, 1.0), 0.05)
    ours = metrics["cpu_ms_per_dispatch_ours"]
    assert ours.value < 0  # shown as measured, not as a passing zero
    assert ours.meets_target() is None
