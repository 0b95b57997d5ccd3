"""A read timeout for request bodies, so a client that stalls frees its thread.

gunicorn's threaded workers hand a connection to a thread once its first bytes
arrive and then read the body with a blocking socket that never times out, so
a client announcing a large body and trickling it holds that thread for as long
as it likes. gunicorn has no option for this (its worker timeout watches the
worker process, not a request), so the socket gunicorn exposes to the WSGI
application gets one here. A client that sends nothing for
`REQUEST_READ_TIMEOUT_SECONDS` fails the read; `core.problems` answers
408. In containers the buffering reverse proxy in front of gunicorn receives
whole bodies before passing them on; this is the guard for direct exposure.
"""
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

GUNICORN_SOCKET = "gunicorn.socket"


class RequestReadTimeoutMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        sock = request.environ.get(GUNICORN_SOCKET)
        if sock is not None:
            # Per request: gunicorn puts kept-alive sockets back in blocking mode.
            sock.settimeout(settings.REQUEST_READ_TIMEOUT_SECONDS)
        return self.get_response(request)
