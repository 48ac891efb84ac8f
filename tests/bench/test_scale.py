"""The scale benchmark's plot: the pooled operations and their scenarios that grew past the
target, whatever other ``growth_<op>_*`` figures the run reports beside them."""

from __future__ import annotations

from pathlib import Path

from bench.harness import Metric
from bench.scale import LISTS, SEARCHES, label, plot


def test_the_plot_draws_the_scenarios_past_the_target_and_nothing_else(tmp_path: Path) -> None:
    sizes = [10_000, 300_000]
    metrics: dict[str, Metric] = {}
    for op, scenarios, grown in (("list_page", LISTS, 1.2), ("search", SEARCHES, 3.0)):
        for scenario in scenarios:
            for size, value in zip(sizes, (10.0, 10.0 * grown), strict=True):
                metrics[f"{op}_{scenario}_p50_ms_{label(size)}"] = Metric(value, "ms")
                metrics[f"{op}_p50_ms_{label(size)}"] = Metric(value, "ms")
            metrics[f"growth_{op}_{scenario}"] = Metric(grown, "x")
        metrics[f"growth_{op}"] = Metric(grown, "x")
    # a figure of the whole operation named like a scenario's (no per-scenario latencies)
    metrics["growth_search_same_answer"] = Metric(2.0, "x")
    drawn = plot(metrics, sizes, to=tmp_path / "scale.png")
    assert drawn.stat().st_size > 10_000
