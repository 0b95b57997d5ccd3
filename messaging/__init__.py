"""Messaging: the event contract and the Kafka boundary.

`contract` owns what the platform puts on Kafka and accepts from it (topics,
payloads, headers, validation, their JSON Schemas and AsyncAPI document);
`kafka` is the only package that imports kafka-python. Imports `core` and
`resilience`; never an app and never `ecommerce`.
"""
