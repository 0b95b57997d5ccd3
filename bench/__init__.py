"""Benchmarks: outbox_bench.py (the relay) and payment_audit.py (the payment audit), each on services of
its own; e2e.py (the running platform); checkout_profile.py (one checkout's own cost)."""
