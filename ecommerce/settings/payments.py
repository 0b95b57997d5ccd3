"""The payment provider's client (payments/client.py); the mock gateway's behaviour until it is gone."""
from .env import env

# The provider's HTTP API (ops/payment_provider locally; a real provider's base URL in production).
PAYMENT_PROVIDER_URL = env.str("PAYMENT_PROVIDER_URL", default="http://127.0.0.1:8100")
# A provider that does not accept a connection within a second is not going to answer in time either;
# the read time-out is the paymentService policy's timeout_seconds (resilience/policies.py).
PAYMENT_CONNECT_TIMEOUT_SECONDS = env.float("PAYMENT_CONNECT_TIMEOUT_SECONDS", default=1.0)
# Pooled connections per process: the consumer's 16 payment threads, plus as many calls abandoned at their
# time limit that still hold a connection until the provider answers or the read time-out ends them.
PAYMENT_POOL_SIZE = env.int("PAYMENT_POOL_SIZE", default=32)

# The mock gateway's behaviour, so tests and drills can inject faults.
PAYMENT_MOCK_SUCCESS_RATE = env.float("PAYMENT_MOCK_SUCCESS_RATE", default=1.0)
PAYMENT_MOCK_LATENCY_SECONDS = env.float("PAYMENT_MOCK_LATENCY_SECONDS", default=0.05)
# What a failure is when one happens: decline, timeout or connection.
PAYMENT_MOCK_FAILURE_KIND = env.str("PAYMENT_MOCK_FAILURE_KIND", default="decline")
