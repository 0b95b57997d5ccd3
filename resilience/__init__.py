"""Resilience mechanisms: the circuit breaker shared through Redis, retry,
time limits and the named policies (kafkaPublisher, paymentService,
catalogQuery). Imports libraries only, nothing of ours.
"""
