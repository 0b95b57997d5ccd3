"""Django's PostgreSQL backend, with a cheaper health check before a reused connection's first use.

With `CONN_HEALTH_CHECKS`, Django sends `SELECT 1` before the first query of
every request (and of every consumer message): a round trip, and work for
PostgreSQL, on each of the two requests and the message an order takes, to
find out what the socket already says. A connection PostgreSQL closed (a
restart, `pg_terminate_backend`, the idle-in-transaction timeout) has the
server's goodbye waiting on its socket: an error message, end of file or a
reset. An idle connection that nobody closed has nothing to read.

So: nothing readable, the connection is used as it is; something readable,
Django's own check runs (`SELECT 1`, which also reads what was waiting, for
example a notice) and closes the connection if it fails. What neither check
can see quickly is a peer that vanished without a word (its host lost): the
first statement then waits for the libpq keepalives and `tcp_user_timeout`
(ecommerce/settings/database.py) with either check alike.

Only the check before first use changes: after an error Django still runs
`is_usable()` (a real `SELECT 1`), because there the socket may be fine and
the session not.
"""
import select

from django.db.backends.postgresql import base


def _socket_has_data(connection) -> bool:
    """Whether the server sent something to a connection at rest (psycopg2's `fileno()`)."""
    poller = select.poll()
    try:
        poller.register(connection.fileno(), select.POLLIN)
    except (OSError, ValueError, TypeError):  # no usable descriptor: let the full check decide
        return True
    # Readable, or POLLHUP/POLLERR (a reset): any event at all means "ask the server".
    return bool(poller.poll(0))


class DatabaseWrapper(base.DatabaseWrapper):
    def close_if_health_check_failed(self) -> None:
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and not self.connection.closed
            and not _socket_has_data(self.connection)
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()
