"""The event contract: what the platform puts on Kafka and accepts from it.

`events.py` owns the topics (each with its `.dlq` sibling), the versioned
payload types, the envelope and payload builders, the headers and the
validation of an incoming value. Beside it, `schemas/` holds a JSON Schema per
event and `asyncapi.yaml` describes the topics; validation is driven by those
schemas. docs/contract.md states the contract in words. This package imports
only the standard library, `core` and third-party libraries, never an app.
"""
