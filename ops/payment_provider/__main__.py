"""`python -m ops.payment_provider --listen 127.0.0.1:8100 --store PATH`: serve until SIGTERM or SIGINT."""
import argparse
import logging
import signal
import sys
import threading

from ops.payment_provider.server import ProviderServer
from ops.payment_provider.store import Store

logger = logging.getLogger("payment_provider")


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT, e.g. 127.0.0.1:8100")
    return host, int(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.payment_provider", description=__doc__)
    parser.add_argument("--listen", type=_address, required=True, help="HOST:PORT to listen on")
    parser.add_argument("--store", required=True, help="the sqlite file of its ledger (created if missing)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if options.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s payment-provider %(levelname)s %(message)s")  # fmt: skip
    store = Store(options.store)
    server = ProviderServer(options.listen, store)

    def stop(signum: int, _frame: object) -> None:
        # shutdown() waits for serve_forever to return, so it cannot run on the thread serving.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logger.info("listening on %s:%s, store %s", *options.listen, options.store)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        store.close()


if __name__ == "__main__":
    main()
