"""Payments: the client of the payment provider's HTTP API and the gateway order management calls.

Owns the pooled HTTP client (`client`), the classification of every answer
(approved, declined, unknown), the `paymentService` policy around it (breaker,
retries of unknown answers with the same key, time limit: `gateway`) and
`manage.py payment_faults`. Owns no models: the ledger is the provider's.
Imports `core` and `resilience` only; `orders` imports it.
"""
