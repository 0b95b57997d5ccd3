"""gunicorn's threaded worker, ending each connection without stopping the worker's main thread to wait for the client.

gunicorn 27's gthread worker closes a connection it does not keep alive (with
`keepalive = 0`, every one: gunicorn.conf.py) on its main thread, the one
that accepts connections and hands them to the threads: it half-closes the
socket and then reads, blocking, until the client closes its side or two
seconds pass (RFC 9112 §9.6: a close with unread request bytes in the buffer
makes the kernel send a reset, which can destroy the response's tail before
the client reads it). While it waits, the worker accepts nothing and
dispatches nothing. One client that keeps its socket after its answer held
every other request of its worker until those two seconds ran out
(tests/ecommerce/test_slow_clients.py fails on gthread),
and under load each close waits for a client that is itself short of CPU.

Here the lingering is the same but does not block: the write side is shut
(the client sees the end of the response), the socket joins the main
thread's poller, what the client sends is read and dropped as it arrives,
and the socket is closed when the client closes, past `MAX_DRAIN_BYTES`, or
at `LINGER_SECONDS`, whichever comes first. gunicorn has no setting for this;
the override is of `finish_request`'s closing branch only and of the
keep-alive sweep the main loop already runs, and requirements.txt pins the
version it was written against.
"""
import selectors
import socket
import time
from dataclasses import dataclass

from gunicorn import util
from gunicorn.workers import gthread

LINGER_SECONDS = 2.0  # gunicorn's own close_graceful timeout
MAX_DRAIN_BYTES = 65536  # and its max_drain
# Sockets lingering at once, per worker: beyond it the oldest is closed (a
# file descriptor each; clients that never close cannot pile them up).
MAX_LINGERING = 256


@dataclass(slots=True)
class _Linger:
    deadline: float
    drained: int = 0


class ThreadWorker(gthread.ThreadWorker):
    def init_process(self) -> None:
        # The lingering sockets, in the order they began to linger: their deadlines rise.
        self.lingering: dict[socket.socket, _Linger] = {}
        super().init_process()

    def finish_request(self, conn, fs) -> None:
        closing = fs.cancelled() or (fs.exception() is None and not fs.result())  # gunicorn's test, as it reads
        if not closing:  # kept alive, deferred, or failed: gunicorn's own handling
            super().finish_request(conn, fs)
            return
        self.nr_conns -= 1
        self._linger(conn.sock)

    def _linger(self, sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
            self.poller.register(sock, selectors.EVENT_READ, self._drain)
        except (OSError, ValueError, KeyError):
            util.close(sock)  # the client is gone already
            return
        self.lingering[sock] = _Linger(deadline=time.monotonic() + LINGER_SECONDS)
        if len(self.lingering) > MAX_LINGERING:
            self._close(next(iter(self.lingering)))

    def _drain(self, sock: socket.socket) -> None:
        linger = self.lingering.get(sock)
        if linger is None:
            return  # closed earlier in this round of events (evicted), its event already selected
        try:
            while linger.drained < MAX_DRAIN_BYTES:  # past it the client keeps sending: stop listening
                data = sock.recv(4096)
                if not data:
                    break  # the client closed its side
                linger.drained += len(data)
        except BlockingIOError:
            return  # all read for now; wait for more or for the end
        except OSError:
            pass  # reset: nothing more to wait for
        self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        del self.lingering[sock]
        try:
            self.poller.unregister(sock)
        except (KeyError, ValueError, OSError):
            pass
        util.close(sock)

    def murder_keepalived(self, force: bool = False) -> None:
        # Run by the main loop at least once a second, and with force=True at shutdown.
        super().murder_keepalived(force)
        now = time.monotonic()
        while self.lingering:
            sock, linger = next(iter(self.lingering.items()))
            if not force and linger.deadline > now:
                break
            self._close(sock)
