"""The Kafka boundary: the only package that imports kafka-python.

Split by role: `connection` (how every client connects), `admin` (topics),
`producer`, `consumer`, `monitoring` (read-only looks for operators) and
`ordered` (the key-ordered executor the consumer runs messages on). Imports
`core` and `resilience`, never an app.
"""
