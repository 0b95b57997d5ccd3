"""The transactional outbox: rows written in the transaction of the state
change they announce, relayed to Kafka by Celery workers, requeued and purged
by beat.

Imports `core` and `resilience`; never another app or `ecommerce`.
"""
