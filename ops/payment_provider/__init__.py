"""A fake payment provider as a process of its own, Stripe-shaped, for tests, drills and benches.

`python -m ops.payment_provider --listen 127.0.0.1:PORT --store PATH`.

Why not a Django app or a WSGI server: its faults need control of the socket
(a TCP reset right after charging, via SO_LINGER 0; an answer held back until
the client gives up), which a WSGI server hides behind its own connection
handling; and it must keep its own ledger, never the platform's database.
So it is the standard library only: `http.server.ThreadingHTTPServer` and a
`sqlite3` store in WAL mode, no Django import (it idles at ~0 CPU).

Modules: `store` (the charges and refunds, idempotent by key), `faults` (what
goes wrong, switched at run time over `/_faults`), `server` (the HTTP API).
Imports nothing of the platform's.
"""
