"""PostgreSQL: the connection, and the session limits that keep a lost client from holding locks.

A relay holds its rows' locks across the Kafka send (outbox/relay.py). A relay
that freezes, or whose host vanishes, would otherwise keep those orders'
events locked until the kernel gives up on the socket, about two hours. With
these limits PostgreSQL frees them within 30 s: it ends a session idle inside
a transaction for `DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS`, cancels a
statement running for `DATABASE_STATEMENT_TIMEOUT_MS`, and probes a silent
peer (10 s idle, then every 5 s, 3 probes: 25 s), as the client probes the
server. docs/runbook.md ("Database session limits") says which long jobs need
more and how to give it.
"""
from typing import Any

from .env import env

DATABASE_STATEMENT_TIMEOUT_MS = env.int("DATABASE_STATEMENT_TIMEOUT_MS", default=15000)
# Above the longest wait inside a transaction: the relay's Kafka send, at most
# twice the kafkaPublisher time limit (10 s: producer start-up, then the send).
DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS = env.int("DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS", default=30000)
DATABASE_KEEPALIVES_IDLE_SECONDS = env.int("DATABASE_KEEPALIVES_IDLE_SECONDS", default=10)
DATABASE_KEEPALIVES_INTERVAL_SECONDS = env.int("DATABASE_KEEPALIVES_INTERVAL_SECONDS", default=5)
DATABASE_KEEPALIVES_COUNT = env.int("DATABASE_KEEPALIVES_COUNT", default=3)


def database_settings(*, idle_in_transaction_timeout_ms: int) -> dict[str, Any]:
    """DATABASES for DATABASE_URL with the session limits above (the suite sets its own idle-in-transaction limit)."""
    idle, interval = DATABASE_KEEPALIVES_IDLE_SECONDS, DATABASE_KEEPALIVES_INTERVAL_SECONDS
    count = DATABASE_KEEPALIVES_COUNT
    # Data sent and not acknowledged for as long as the keepalives take to give
    # up means the peer is gone too (keepalives only probe an idle connection).
    unacknowledged_ms = (idle + interval * count) * 1000
    server_options = {
        # No statement may hold locks (stock rows, carts) for long.
        "statement_timeout": DATABASE_STATEMENT_TIMEOUT_MS,
        "idle_in_transaction_session_timeout": idle_in_transaction_timeout_ms,
        "tcp_keepalives_idle": idle,
        "tcp_keepalives_interval": interval,
        "tcp_keepalives_count": count,
        "tcp_user_timeout": unacknowledged_ms,
    }
    return {
        "default": {
            **env.db_url("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/ecommerce"),
            # Django's PostgreSQL backend, its health check made cheap (core/postgresql/base.py).
            "ENGINE": "core.postgresql",
            # Reuse connections between requests, but re-check them so a restarted
            # PostgreSQL does not leave every worker holding a dead socket (the
            # check reads the socket first and asks the server only if it has spoken).
            "CONN_MAX_AGE": env.int("DATABASE_CONN_MAX_AGE", default=60),
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": {
                # Fail fast when PostgreSQL is unreachable: a request answers 503
                # within seconds instead of hanging on a TCP connect.
                "connect_timeout": env.int("DATABASE_CONNECT_TIMEOUT", default=3),
                # libpq's side: a server that vanished fails the client's call
                # instead of leaving it waiting for an answer.
                "keepalives": 1,
                "keepalives_idle": idle,
                "keepalives_interval": interval,
                "keepalives_count": count,
                "tcp_user_timeout": unacknowledged_ms,
                # The server's side, for this session.
                "options": " ".join(f"-c {name}={value}" for name, value in server_options.items()),
            },
        }
    }


DATABASES = database_settings(idle_in_transaction_timeout_ms=DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS)
