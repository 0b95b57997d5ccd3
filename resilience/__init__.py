"""Resilience policies: circuit breaker, retry with backoff, time limits, and their named policies.

Imports nothing of ours (only Django settings, Redis and prometheus_client), so every floor above
may use it. A plain package, not a Django app: it owns no models or migrations.
"""
