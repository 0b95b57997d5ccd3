"""gunicorn settings shared by scripts/run.sh and the container image.

Threaded workers (gthread): a connection holds a thread only while its request
is read and served, and a worker accepts no more connections than it has
threads, so a connection waiting for a free thread is left in the listen
backlog for another worker instead of queueing behind slow clients. Clients
that trickle their bodies therefore tie up at most one thread each, and a stall
of `REQUEST_READ_TIMEOUT_SECONDS` ends theirs (core/slow_clients.py).
In containers, nginx buffers whole requests before gunicorn sees them.
"""
import gc
import os

workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
# gunicorn's gthread, ending connections without blocking its main thread (core/gunicorn_worker.py).
worker_class = "core.gunicorn_worker.ThreadWorker"
# Each thread may hold a PostgreSQL connection (CONN_MAX_AGE): workers × threads
# stays well under PostgreSQL's default of 100 connections.
threads = int(os.environ.get("WEB_THREADS", "14"))
worker_connections = threads
# No kept-alive idle connections: each would count against worker_connections.
# nginx opens a new upstream connection per request anyway.
keepalive = 0
# A worker whose main loop stops answering is restarted; requests themselves are
# bounded by the database statement timeout and the read timeout.
timeout = 30
graceful_timeout = 20
# No access log unless asked for (WEB_ACCESS_LOG=- for stdout, or a path): a
# line per request cost the web ~80 µs of CPU to format (timed in-process,
# uncalibrated) and supervisord as much again to carry into .run/logs/web.log,
# two lines per order, for what is counted already: django-prometheus counts
# requests by view, method and status, the checkout logs each order it
# commits, and in containers nginx logs every request.
accesslog = os.environ.get("WEB_ACCESS_LOG") or None


def post_worker_init(worker) -> None:
    # The application is loaded: its ~135,000 objects (modules, classes, URL
    # patterns, serializers) live as long as the worker. Frozen, the garbage
    # collector stops scanning them, so a full collection takes well under a
    # millisecond instead of ~50 ms with every thread of the worker stopped:
    # long enough, with requests arriving meanwhile, to fill the worker's
    # in-flight limit and shed (core/shedding.py). Instagram's gc.freeze().
    gc.freeze()


def child_exit(server, worker) -> None:
    # With several processes sharing /metrics, a dead worker's live gauges must go.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
