"""Slow clients cannot starve the web server: gunicorn as configured, for real, in a subprocess."""
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from core.gunicorn_worker import LINGER_SECONDS
from tests.servers import gunicorn_server as gunicorn_server_process

pytestmark = pytest.mark.django_db

TRICKLERS = 20
# Announced, never sent: under the body-size limit, so the server really waits for it.
ANNOUNCED_BYTES = 1_000_000
READ_TIMEOUT_SECONDS = 2
# An answer within a few tens of milliseconds when idle; the bound leaves room for a machine
# busy with the rest of the suite (one took 1.2 s in CI), far from a request that never comes.
ANSWERED_SECONDS = 3.0
STARVED_SECONDS = 10  # a request unanswered this long is taken as starved


@pytest.fixture
def gunicorn_server() -> Iterator[str]:
    """gunicorn started with gunicorn.conf.py (the run command's and the image's) on a free port."""
    with gunicorn_server_process(REQUEST_READ_TIMEOUT_SECONDS=str(READ_TIMEOUT_SECONDS)) as base:
        yield base


def open_trickler(port: int) -> socket.socket:
    """Announce a large login body and send only its first byte."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {ANNOUNCED_BYTES}\r\n\r\n".encode()
        + b"{"
    )
    return sock


def test_api_answers_while_twenty_clients_trickle_their_bodies(gunicorn_server):
    # given workers that have served once (a worker's first request opens its connections)
    for _ in range(6):
        requests.get(f"{gunicorn_server}/api/v1/products", timeout=STARVED_SECONDS).raise_for_status()
    # and 20 connections, each sending its body a byte at a time (faster than the read timeout)
    port = int(gunicorn_server.rsplit(":", 1)[1])
    sockets: list[socket.socket] = []
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.3):
            for sock in sockets:
                try:
                    sock.send(b" ")
                except OSError:
                    pass

    trickler = threading.Thread(target=trickle, daemon=True)
    try:
        sockets.extend(open_trickler(port) for _ in range(TRICKLERS))
        trickler.start()
        time.sleep(1.0)  # every trickler is being read by now

        # when the catalog is asked for, several times
        timings = []
        for _ in range(5):
            started = time.monotonic()
            response = requests.get(f"{gunicorn_server}/api/v1/products", timeout=STARVED_SECONDS)
            timings.append(time.monotonic() - started)
            assert response.status_code == 200, response.text

        # then each was answered, and promptly: had the tricklers held every thread, no answer would
        # come while they trickle (each fast enough never to reach the read timeout)
        assert max(timings) < ANSWERED_SECONDS, timings
    finally:
        stop.set()
        if trickler.is_alive():
            trickler.join(timeout=5)
        for sock in sockets:
            sock.close()


def test_a_client_that_stalls_its_body_loses_the_request_with_408(gunicorn_server):
    # given a client that announces a body and then sends nothing more
    port = int(gunicorn_server.rsplit(":", 1)[1])
    sock = open_trickler(port)
    try:
        sock.settimeout(READ_TIMEOUT_SECONDS + 10)
        started = time.monotonic()

        # when it waits
        answer = sock.recv(65536).decode(errors="replace")

        # then the server gave up on it after the read timeout, with a problem
        elapsed = time.monotonic() - started
        assert answer.startswith("HTTP/1.1 408"), answer
        assert "application/problem+json" in answer
        assert READ_TIMEOUT_SECONDS - 0.5 <= elapsed < READ_TIMEOUT_SECONDS + 5, elapsed
    finally:
        sock.close()


def _answered(port: int) -> socket.socket:
    """Ask for /health/live and read the whole answer; return the socket, still open on this side."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        assert chunk, answer
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer
    return sock


def test_a_client_that_keeps_its_socket_after_its_answer_holds_up_no_one():
    # given one worker, so that every connection goes to the same main thread
    with gunicorn_server_process(WEB_CONCURRENCY="1") as base:
        port = int(base.rsplit(":", 1)[1])
        # and a client that got its answer and does not close (gunicorn's own close waited 1.8 s for it)
        held = _answered(port)
        try:
            time.sleep(0.3)  # the worker has begun to end that connection

            # when others ask meanwhile
            timings = []
            for _ in range(3):
                started = time.monotonic()
                _answered(port).close()
                timings.append(time.monotonic() - started)

            # then they are answered at once
            assert max(timings) < 0.5, timings
            # and the held connection is ended on the server's side within its linger time:
            # data sent now is read and dropped (no reset), data sent after it meets a closed socket.
            held.sendall(b"x")
            time.sleep(0.2)
            assert held.recv(1) == b""  # the end of the answer, not a reset
            time.sleep(LINGER_SECONDS + 1.5)
            held.sendall(b"x")
            time.sleep(0.2)
            with pytest.raises((ConnectionResetError, BrokenPipeError)):
                held.recv(1)
                held.sendall(b"x")
        finally:
            held.close()
