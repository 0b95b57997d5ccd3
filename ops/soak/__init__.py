"""The soak: hours of checkouts under a seeded schedule of overlapping faults, then a certificate.

`scripts/drill.sh soak --minutes M --rate R --seed S` (`python -m ops.drills soak`)
against the platform `scripts/run.sh` started, like the single-fault drills
next door (ops/drills/), whose faults it reuses and extends.

Modules, in the order a run uses them:

* `nemesis`: the fault catalogue and the schedule drawn from the seed (the same
  seed gives the same schedule), and the thread that applies it;
* `workload`: the open-loop customers (checkouts, some retried with the same
  Idempotency-Key, some cancelled), each request recorded with its outcome;
* `history`: the append-only record of every request, fault and sample;
* `readback`: what the platform holds at the end (orders, outbox rows,
  processed events, dead letters, stock, the provider's ledger, the topics
  from their earliest offset);
* `checker`: judges the history against the read-backs, and nothing else, and
  writes the certificate (JSON) and the readable report;
* `timeline`: the PNG (faults as bands, offered and acknowledged rate,
  latency, outbox backlog, consumer lag);
* `runner`: the command line and the run from start to certificate.

Like ops/drills, nothing of the platform imports it; it imports the platform's
models and settings to read back what the platform did.
"""
