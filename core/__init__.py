"""The ground floor: what every app shares and no app owns.

Owns database helpers and the PostgreSQL backend (postgresql/), errors and
problem details (RFC 9457), correlation ids, request guards (parsers, slow
clients, gunicorn's worker, load shedding), pagination, throttles,
authentication and permissions, the Redis cache backend, the periodic jobs'
retry options, and the defects the test settings may plant (planted.py).
Imports Django, DRF, libraries and `resilience`; never `messaging`, an app
(catalog, checkout, orders, outbox, deadletters) or `ecommerce`.
"""
