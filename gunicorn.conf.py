"""gunicorn settings shared by scripts/run.sh and the container image."""
import os

workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
# A request that takes longer is killed; checkout's statements are bounded far below this.
timeout = 30
graceful_timeout = 20
accesslog = "-"


def child_exit(server, worker) -> None:
    # With several processes sharing /metrics, a dead worker's live gauges must go.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
