"""Resilience mechanisms: the circuit breaker shared through Redis, retry and
backoff, time limits, and the named policies (kafkaPublisher, paymentService,
catalogQuery).

Imports nothing of ours (only Django settings, Redis and prometheus_client),
so every floor above may use it. A plain package, not a Django app: it owns
no models or migrations.
"""
