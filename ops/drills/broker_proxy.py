"""A TCP proxy in front of the local broker whose delay and loss a drill changes at run time.

The resilience plan's broker-latency experiment (Toxiproxy: 500 ms added and a
share of packets dropped, on the broker's connections only) cannot be run here
the usual ways: this machine's kernel has no qdisc modules, so `tc netem`
fails, and there is no Toxiproxy server package on PyPI or in Debian (only
clients for a server we cannot install). So the run command puts this proxy
in the broker's path (`scripts/services.sh` with `KAFKA_FAULT_PROXY=1`): tansu
listens on an internal port and advertises the proxy's address, so every
client, bootstrap and per-broker connections alike, goes through it and none
can bypass it. With no fault set it forwards bytes as they come.

Faults are a small JSON file (`.run/kafka-proxy-PORT.json`,
`{"delay_seconds": 0.5, "loss": 0.1}`) that the proxy re-reads at most twice
a second; deleting it heals the path. A TCP stream cannot lose a packet
without breaking, so "loss" does what a lost segment does to a TCP stream on
loopback: the chunk waits one retransmission timeout (Linux's minimum, 200 ms)
before it arrives, and everything behind it on the connection waits too.

Faults may also single out some clients while the others still reach the
broker (the soak's "consumer cut from the broker"): every Kafka request opens
with the client's `client.id`, so the proxy reads it from a connection's first
request and matches it against prefixes. `"cut_clients": ["order-service-group"]`
closes those clients' connections, and every new one at its first request, until
the entry goes; `"slow_clients": {"ecommerce-outbox": 3.0}` delays only theirs.

    python -m ops.drills.broker_proxy --listen 127.0.0.1:9092 --target 127.0.0.1:29092 --control .run/kafka-proxy-9092.json

Standard library only (asyncio), and nothing of the platform's: it must start
before Django, the broker's clients or the virtualenv's packages matter.
"""
import argparse
import asyncio
import json
import logging
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("broker_proxy")

# What one lost segment costs a TCP stream: Linux's minimum retransmission timeout.
RETRANSMISSION_SECONDS = 0.2
CONTROL_REREAD_SECONDS = 0.5
CHUNK_BYTES = 65536


@dataclass(frozen=True)
class ProxyFaults:
    delay_seconds: float = 0.0
    loss: float = 0.0
    # client.id prefixes whose connections are closed (and refused) / delayed by so many seconds.
    cut_clients: tuple[str, ...] = ()
    slow_clients: tuple[tuple[str, float], ...] = ()

    def cut(self, client_id: str | None) -> bool:
        return client_id is not None and any(client_id.startswith(prefix) for prefix in self.cut_clients)

    def client_delay(self, client_id: str | None) -> float:
        if client_id is None:
            return 0.0
        return max((seconds for prefix, seconds in self.slow_clients if client_id.startswith(prefix)), default=0.0)


def proxy_faults_write(
    control: Path,
    *,
    delay_seconds: float = 0.0,
    loss: float = 0.0,
    cut_clients: tuple[str, ...] = (),
    slow_clients: dict[str, float] | None = None,
) -> None:
    """Set the proxy's faults (it applies them within half a second)."""
    slow_clients = slow_clients or {}
    if delay_seconds < 0 or not 0.0 <= loss < 1.0 or any(seconds < 0 for seconds in slow_clients.values()):
        raise ValueError("the delays cannot be negative and the loss is a share below 1")
    if any(not prefix for prefix in (*cut_clients, *slow_clients)):
        raise ValueError("a client prefix cannot be empty: it would match every client")
    faults = {"delay_seconds": delay_seconds, "loss": loss, "cut_clients": list(cut_clients), "slow_clients": slow_clients}
    temporary = control.with_suffix(".tmp")
    temporary.write_text(json.dumps(faults))
    temporary.replace(control)  # atomic: the proxy never reads half a file


def proxy_faults_reset(control: Path) -> None:
    """Heal the path: no delay, no loss."""
    control.unlink(missing_ok=True)


def proxy_faults_read(control: Path) -> ProxyFaults:
    """The faults in the control file; none when it is missing or unreadable."""
    try:
        data = json.loads(control.read_text())
        return ProxyFaults(
            delay_seconds=max(float(data.get("delay_seconds", 0)), 0.0),
            loss=min(max(float(data.get("loss", 0)), 0.0), 0.99),
            cut_clients=tuple(str(prefix) for prefix in data.get("cut_clients", ()) if prefix),
            slow_clients=tuple((str(prefix), max(float(seconds), 0.0)) for prefix, seconds in data.get("slow_clients", {}).items() if prefix),
        )
    except FileNotFoundError:
        return ProxyFaults()
    except (OSError, ValueError, TypeError, AttributeError) as error:
        logger.warning("ignoring unreadable control file %s: %r", control, error)
        return ProxyFaults()


class FaultControl:
    """The faults in force, re-read from the control file at most every CONTROL_REREAD_SECONDS."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._read_at = float("-inf")
        self._faults = ProxyFaults()

    def current(self) -> ProxyFaults:
        now = time.monotonic()
        if now - self._read_at >= CONTROL_REREAD_SECONDS:
            faults = proxy_faults_read(self.path)
            if faults != self._faults:
                logger.warning(
                    "broker path faults now delay=%.3fs loss=%.2f cut=%s slow=%s",
                    faults.delay_seconds, faults.loss, list(faults.cut_clients), dict(faults.slow_clients),
                )  # fmt: skip
            self._faults, self._read_at = faults, now
        return self._faults


def kafka_client_id(request: bytes) -> str | None:
    """The `client.id` of a Kafka request (None if the bytes are too short or have none).

    Every request header, v1 and v2 alike, opens with int32 size, int16 api
    key, int16 api version, int32 correlation id, then the client id as an
    int16 length and that many UTF-8 bytes (-1: null).
    """
    if len(request) < 14:
        return None
    length = int.from_bytes(request[12:14], "big", signed=True)
    if length < 0 or len(request) < 14 + length:
        return None
    return request[14 : 14 + length].decode("utf-8", errors="replace")


class _Link:
    """One client connection through the proxy: who the client is, and whether it is cut."""

    def __init__(self) -> None:
        self.client_id: str | None = None
        self.cut = asyncio.Event()


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, control: FaultControl, link: _Link, *, from_client: bool
) -> None:
    """Copy one direction, each chunk delivered at its due time and never before the one ahead of it."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            if data is None:
                return
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    delivering = asyncio.create_task(deliver())
    last_due = 0.0
    try:
        while data := await reader.read(CHUNK_BYTES):
            if from_client and link.client_id is None:
                link.client_id = kafka_client_id(data)
            faults = control.current()
            if faults.cut(link.client_id):
                link.cut.set()
                break
            extra = faults.delay_seconds + faults.client_delay(link.client_id)
            if faults.loss and random.random() < faults.loss:
                extra += RETRANSMISSION_SECONDS
            last_due = max(loop.time() + extra, last_due)
            queue.put_nowait((last_due, data))
            if delivering.done():
                break
    except (ConnectionError, OSError):
        pass
    finally:
        queue.put_nowait((0.0, None))
        try:
            await delivering
        except (ConnectionError, OSError):
            pass


async def _watch(control: FaultControl, link: _Link) -> None:
    """Cut an idle connection too, once its client is cut (a pump only looks when bytes come)."""
    while not link.cut.is_set():
        if control.current().cut(link.client_id):
            link.cut.set()
            return
        await asyncio.sleep(CONTROL_REREAD_SECONDS)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, OSError):
        pass


async def _connection(client_reader, client_writer, *, target: tuple[str, int], control: FaultControl) -> None:
    try:
        broker_reader, broker_writer = await asyncio.open_connection(*target)
    except OSError:
        # The broker is down (killed, restarting): the client sees what it would see without us.
        await _close(client_writer)
        return
    link = _Link()
    # Both directions end together: Kafka connections do not half-close.
    tasks = [
        asyncio.create_task(_pump(client_reader, broker_writer, control, link, from_client=True)),
        asyncio.create_task(_pump(broker_reader, client_writer, control, link, from_client=False)),
        asyncio.create_task(_watch(control, link)),
    ]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    await _close(broker_writer)
    await _close(client_writer)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host or "127.0.0.1", int(port)


async def serve(*, listen: tuple[str, int], target: tuple[str, int], control: Path) -> None:
    """Forward `listen` to `target` until SIGTERM or SIGINT."""
    faults = FaultControl(control)
    server = await asyncio.start_server(
        lambda r, w: _connection(r, w, target=target, control=faults), host=listen[0], port=listen[1], reuse_address=True
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    logger.warning("broker proxy %s:%s -> %s:%s (faults: %s)", *listen, *target, control)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="host:port clients connect to (the advertised broker address)")
    parser.add_argument("--target", required=True, help="host:port of the broker itself")
    parser.add_argument("--control", required=True, type=Path, help="JSON file of the faults in force")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(listen=_address(arguments.listen), target=_address(arguments.target), control=arguments.control))


if __name__ == "__main__":
    main()
