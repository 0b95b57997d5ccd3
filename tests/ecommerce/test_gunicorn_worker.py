"""The web worker's lingering sockets, driven directly: no server, only the poller and socket pairs."""
import selectors
import socket

from core.gunicorn_worker import ThreadWorker


def test_an_event_of_a_socket_closed_earlier_in_the_same_round_is_ignored():
    # given a worker lingering on a socket whose client has sent something
    worker = ThreadWorker.__new__(ThreadWorker)  # only what lingering uses: no arbiter, no config
    worker.poller, worker.lingering = selectors.DefaultSelector(), {}
    ours, client = socket.socketpair()
    try:
        worker._linger(ours)
        client.sendall(b"x")
        events = worker.poller.select(timeout=1)
        assert events

        # when it is closed before its event is dispatched (evicted past MAX_LINGERING by
        # another socket's finish in the same round of events)
        worker._close(ours)
        for key, _ in events:
            key.data(key.fileobj)

        # then the event is dropped, and nothing lingers
        assert worker.lingering == {}
    finally:
        worker.poller.close()
        ours.close()
        client.close()
