"""Routing profiles from ROUTING_SIM_SERVICES / ROUTING_SIM_DEFAULT_PROFILE."""

import json
import os
import subprocess

import pytest
from callback_routing_sim import ServiceProfile, parse_profiles
from callback_routing_sim.profiles import ProfileError

from tests.support import BIN


def test_defaults_for_services_not_listed() -> None:
    profiles = parse_profiles("{}")
    profile = profiles.for_service("anything")
    assert profile == ServiceProfile()
    assert (profile.agents, profile.handle_seconds_min, profile.handle_seconds_max) == (2, 1.0, 3.0)
    assert (profile.dial_failure_probability, profile.abandon_probability) == (0.1, 0.0)
    assert profile.patience_seconds is None
    assert profile.route_point_of("sales") == "RP-sales"


def test_listed_services_take_missing_keys_from_the_default_profile() -> None:
    profiles = parse_profiles(
        json.dumps({"sales": {"agents": 1, "route_point": "+442079460000"}}),
        json.dumps({"agents": 4, "handle_seconds_min": 0.01, "handle_seconds_max": 0.02}),
    )
    sales = profiles.for_service("sales")
    other = profiles.for_service("support")
    assert (sales.agents, sales.handle_seconds_max, sales.route_point) == (1, 0.02, "+442079460000")
    assert (other.agents, other.handle_seconds_min) == (4, 0.01)


@pytest.mark.parametrize(
    ("services", "default", "message"),
    [
        (
            "{not json",
            "{}",
            "invalid configuration: ROUTING_SIM_SERVICES: Invalid JSON: key must be a string",
        ),
        ('{"sales": 3}', "{}", "ROUTING_SIM_SERVICES: sales: Input should be an object"),
        (
            '{"sales": {"agents": 0}}',
            "{}",
            "ROUTING_SIM_SERVICES: sales.agents: Input should be greater than or equal to 1",
        ),
        ('{"sales": {"agnets": 2}}', "{}", "sales.agnets: Extra inputs are not permitted"),
        (
            "{}",
            '{"handle_seconds_min": 5, "handle_seconds_max": 1}',
            "ROUTING_SIM_DEFAULT_PROFILE: handle_seconds_max must not be below handle_seconds_min",
        ),
        (
            "{}",
            '{"dial_failure_probability": 1.5}',
            "ROUTING_SIM_DEFAULT_PROFILE: dial_failure_probability: Input should be less than",
        ),
    ],
)
def test_a_bad_profile_is_one_line_naming_the_setting(
    services: str, default: str, message: str
) -> None:
    with pytest.raises(ProfileError) as raised:
        parse_profiles(services, default)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.process
def test_the_service_refuses_to_start_on_a_bad_profile() -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "MONGODB_URL": "mongodb://127.0.0.1:1",
        "ROUTING_SIM_SERVICES": '{"sales": {"agents": -1}}',
    }
    run = subprocess.run(
        [str(BIN / "callback-routing-sim")], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == (
        "invalid configuration: ROUTING_SIM_SERVICES: sales.agents: "
        "Input should be greater than or equal to 1"
    )
