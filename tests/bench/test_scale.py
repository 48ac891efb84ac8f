"""The scale benchmark's plot: the pooled operations and their scenarios that grew past the
target, whatever other ``growth_<op>_*`` figures the run reports beside them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.harness import Metric
from bench.scale import LISTS, SEARCHES, _answer_queries, label, plot


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
    without_floor = plot(metrics, sizes, to=tmp_path / "without.png").read_bytes()
    for size, value in zip(sizes, (2.0, 5.0), strict=True):
        metrics[f"search_floor_p50_ms_{label(size)}"] = Metric(value, "ms")
    metrics["growth_search_floor"] = Metric(2.5, "x")
    drawn = plot(metrics, sizes, to=tmp_path / "scale.png")
    assert drawn.stat().st_size > 10_000
    assert drawn.read_bytes() != without_floor  # the floor's line and its legend


def test_the_search_floor_asks_for_exactly_the_stretch_the_page_holds() -> None:
    now = datetime(2030, 1, 15, 12, tzinfo=UTC)
    first, last = now - timedelta(days=9), now - timedelta(days=2, milliseconds=-7)
    items = [{"desired_time": first.isoformat()}, {"desired_time": last.isoformat()}]
    (query,) = _answer_queries(SEARCHES["phone6"], items, now)
    # the admin API's query for it (the stored prefix leads), its time from first to last
    assert query == {
        "customer_number_prefix": SEARCHES["phone6"]["q"],
        "desired_time": {"$gte": first, "$lt": last + timedelta(milliseconds=1)},
    }
    (query,) = _answer_queries(SEARCHES["phone8"], [], now)  # nothing found: the whole range
    assert query["desired_time"] == {"$gte": now - timedelta(days=14), "$lt": now}
