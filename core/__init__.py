"""The ground floor: what every app shares and no app owns.

Owns database helpers, errors and problem details (RFC 9457), correlation ids,
request guards (parsers, slow clients, load shedding), pagination, throttles,
authentication and permissions, the Redis cache backend, and the Kafka boundary
(`core.kafka`). Imports Django, DRF, libraries and `resilience`; never an app
(catalog, checkout, orders, outbox, deadletters) and never `ecommerce`.
"""
