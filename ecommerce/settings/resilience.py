"""Overrides of the named resilience policies (defaults: resilience/policies.py, docs/contract.md).

RESILIENCE_POLICIES_JSON takes a JSON object such as
{"kafkaPublisher": {"breaker": {"open_seconds": 10}, "timeout_seconds": 5}}.
"""
from .env import env

RESILIENCE_POLICIES = env.json("RESILIENCE_POLICIES_JSON", default={})
