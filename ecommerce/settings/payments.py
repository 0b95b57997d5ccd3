"""The payment provider's client (payments/client.py)."""
from .env import env
from .orders import CONSUMER_MAX_IN_FLIGHT

# The provider's HTTP API (ops/payment_provider locally; a real provider's base URL in production).
PAYMENT_PROVIDER_URL = env.str("PAYMENT_PROVIDER_URL", default="http://127.0.0.1:8100")
# A provider that does not accept a connection within a second is not going to answer in time either;
# the read time-out is the paymentService policy's timeout_seconds (resilience/policies.py).
PAYMENT_CONNECT_TIMEOUT_SECONDS = env.float("PAYMENT_CONNECT_TIMEOUT_SECONDS", default=1.0)
# Pooled connections per process: the consumer's payment threads (CONSUMER_MAX_IN_FLIGHT), plus as many calls
# abandoned at their time limit that still hold a connection until the provider answers or the read time-out ends them.
PAYMENT_POOL_SIZE = env.int("PAYMENT_POOL_SIZE", default=2 * CONSUMER_MAX_IN_FLIGHT)

