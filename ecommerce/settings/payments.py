"""The payment gateway client (orders/payments.py): the mock gateway's behaviour, for tests and drills."""
from .env import env

# The mock gateway's behaviour, so tests and drills can inject faults.
PAYMENT_MOCK_SUCCESS_RATE = env.float("PAYMENT_MOCK_SUCCESS_RATE", default=1.0)
PAYMENT_MOCK_LATENCY_SECONDS = env.float("PAYMENT_MOCK_LATENCY_SECONDS", default=0.05)
# What a failure is when one happens: decline, timeout or connection.
PAYMENT_MOCK_FAILURE_KIND = env.str("PAYMENT_MOCK_FAILURE_KIND", default="decline")
