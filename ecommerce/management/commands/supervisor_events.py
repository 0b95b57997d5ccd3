"""The supervisor's event listener: log and count every restart of a platform process.

Run by supervisord itself (ops/supervisor/programs/events.conf), never by
hand: it speaks supervisor's event-listener protocol on stdin/stdout (through
supervisor's own `childutils`), so it logs to stderr only.
"""
import logging
import os
import sys
import time
from collections import defaultdict, deque

from django.core.management.base import BaseCommand
from supervisor import childutils

from ecommerce.metrics import PROCESS_RESTARTS

logger = logging.getLogger(__name__)

# A process that dies this often within the window is crash-looping: said louder.
CRASH_LOOP_COUNT = 3
CRASH_LOOP_WINDOW_SECONDS = 300.0
# A (re)start from these states follows a death, not an operator's stop or the first start.
RESTART_FROM_STATES = {"EXITED", "BACKOFF"}


class Command(BaseCommand):
    help = "Supervisor event listener: log process deaths and count restarts (platform_process_restarts_total)."

    def handle(self, *args, **options) -> None:
        self._known_processes_zeroed()
        crashes: dict[str, deque[float]] = defaultdict(deque)
        while True:
            headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)
            try:
                if headers["eventname"].startswith("PROCESS_STATE_"):
                    details, _ = childutils.eventdata(payload + "\n")
                    self._on_state(headers["eventname"].removeprefix("PROCESS_STATE_"), details, crashes)
            except Exception:  # one odd event must not stop the listener (supervisord would restart it anyway)
                logger.exception("could not handle a supervisor event", extra={"event": "resilience"})
            finally:
                childutils.listener.ok(sys.stdout)

    def _known_processes_zeroed(self) -> None:
        """Export every supervised process's counter at zero, so an alert sees the first restart."""
        try:
            rpc = childutils.getRPCInterface(os.environ)
            names = [info["name"] for info in rpc.supervisor.getAllProcessInfo()]
        except Exception as error:  # no RPC interface configured: counters appear on first restart instead
            logger.warning("cannot list supervised processes", extra={"error": repr(error)})
            return
        for name in names:
            PROCESS_RESTARTS.labels(name)

    def _on_state(self, state: str, details: dict[str, str], crashes: dict[str, deque[float]]) -> None:
        name = details.get("processname", "?")
        context = {"event": "resilience", "program": name, "from_state": details.get("from_state"), "to_state": state}
        if state == "EXITED" and details.get("expected") == "0":
            now = time.monotonic()
            recent = crashes[name]
            recent.append(now)
            while recent and recent[0] < now - CRASH_LOOP_WINDOW_SECONDS:
                recent.popleft()
            if len(recent) >= CRASH_LOOP_COUNT:
                logger.error(
                    "process %s crash-looping: %d deaths in %.0f s",
                    name, len(recent), CRASH_LOOP_WINDOW_SECONDS, extra={**context, "deaths": len(recent)},
                )  # fmt: skip
            else:
                logger.warning("process %s died (pid %s); restarting", name, details.get("pid"), extra=context)
        elif state == "BACKOFF":
            logger.warning("process %s failed to start; retrying with backoff", name, extra=context)
        elif state == "FATAL":
            logger.error("process %s could not be started; supervisor gave up", name, extra=context)
        elif state == "STARTING" and details.get("from_state") in RESTART_FROM_STATES:
            PROCESS_RESTARTS.labels(name).inc()
            logger.info("process %s restarting", name, extra=context)
