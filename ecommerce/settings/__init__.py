"""Settings: base (everything shared), one module per concern it star-imports
(checkout, orders, outbox, kafka, payments, redis, celery, rest, logging,
resilience), and one per environment (local, test, production). Imports only
the environment reader (env.py) and libraries, nothing of ours."""
