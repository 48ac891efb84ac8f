"""The ORS/URS routing simulation; ``plan_attempt`` tells what it will do with each attempt."""

from callback_routing_sim.plans import AttemptPlan, plan_attempt
from callback_routing_sim.profiles import RoutingProfiles, ServiceProfile, parse_profiles

__all__ = ["AttemptPlan", "RoutingProfiles", "ServiceProfile", "parse_profiles", "plan_attempt"]
