"""Order management: orders and their state machine, the order API, the
OrderCreated consumer, payments through the gateway, refunds, reconciliation
and the payment audit.

Imports `catalog` (stock), `outbox`, `deadletters`, `core` and `resilience`;
never checkout or `ecommerce`.
"""
