"""The cost bench's CPU accounting (bench/processes.py) against the real PostgreSQL server."""
import time
from pathlib import Path

import psycopg2
from django.conf import settings

from bench.processes import PlatformProcesses, cpu_seconds_by_group

# About a second of one backend's CPU here: a function scan, never parallel.
BURN_SQL = "SELECT count(*) FROM generate_series(1, 10000000)"


def test_a_backend_that_burns_cpu_and_exits_between_snapshots_is_counted(tmp_path):
    # The scrape's connection, a pool thread's: opened and closed during a
    # run, its CPU goes with it into the postmaster's children counter, which
    # only counts if the postmaster ("/usr/lib/postgresql/N/bin/postgres -D
    # ...", unlike its "postgres: ..." children) is found as the root.
    database = settings.DATABASES["default"]
    processes = PlatformProcesses(tmp_path, redis_port=0)  # no platform: the server's processes only
    before = processes.snapshot()
    connection = psycopg2.connect(
        host=database["HOST"], port=database["PORT"], user=database["USER"], password=database["PASSWORD"], dbname="postgres"
    )
    try:
        backend = connection.get_backend_pid()
        with connection.cursor() as cursor:
            started = time.monotonic()
            cursor.execute(BURN_SQL)
            waited = time.monotonic() - started
    finally:
        connection.close()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{backend}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # reaped by the postmaster
    assert not Path(f"/proc/{backend}").exists()
    used = cpu_seconds_by_group(before, processes.snapshot())
    assert backend not in before or before[backend].group == "postgresql"
    # At least half the query's wall time was the backend's CPU (two cores,
    # nothing else on them for long); the old accounting counted none of it.
    assert used["postgresql"] >= min(waited, 0.8) / 2, (used, waited)
