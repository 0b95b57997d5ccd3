"""Dead letters: messages a consumer could not process, published to their
`.dlq` topic and stored as bytes, shown in the admin, replayed and resolved.

Imports `core`; never another app or `ecommerce`.
"""
