"""Benchmarks: outbox_bench.py (the relay, on its own services) and e2e.py (the running platform)."""
