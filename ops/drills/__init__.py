"""Fault drills against the running platform: `scripts/drill.sh SCENARIO` (`python -m ops.drills`).

Here, under `ops/`, next to the supervisor programs, the Prometheus rules and
the runbook's chaos playbook they rehearse, because a drill is an operator's
tool for the platform that `scripts/run.sh` started: it signals its processes
(through supervisord's socket and the pid files in `.run/`), changes the
payment provider through `manage.py payment_faults`, slows the broker through
the proxy in its path (`broker_proxy.py`), reads the alerts of the run
command's Prometheus, and judges the outcome from the platform's own
database. It is not part of the web app (nothing in it is imported by the
apps) and not a bench (`bench/` measures speed; a drill checks guarantees),
though it drives the same open-loop load (`bench.load.checkout_load`).

Modules: `scenarios` (what each drill injects and undoes), `faults` (the
injections), `report` (the invariants and the alerts), `runner` (load, fault,
quiescence, report), `broker_proxy` (the fault-injecting TCP proxy). The soak
(`scripts/drill.sh soak`, ops/soak/) reuses the faults and the runner's entry point.
"""
