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


def proxy_faults_write(control: Path, *, delay_seconds: float, loss: float) -> None:
    """Set the proxy's faults (it applies them within half a second)."""
    if delay_seconds < 0 or not 0.0 <= loss < 1.0:
        raise ValueError("the delay cannot be negative and the loss is a share below 1")
    temporary = control.with_suffix(".tmp")
    temporary.write_text(json.dumps({"delay_seconds": delay_seconds, "loss": loss}))
    temporary.replace(control)  # atomic: the proxy never reads half a file


def proxy_faults_reset(control: Path) -> None:
    """Heal the path: no delay, no loss."""
    control.unlink(missing_ok=True)


def proxy_faults_read(control: Path) -> ProxyFaults:
    """The faults in the control file; none when it is missing or unreadable."""
    try:
        data = json.loads(control.read_text())
        return ProxyFaults(delay_seconds=max(float(data.get("delay_seconds", 0)), 0.0), loss=min(max(float(data.get("loss", 0)), 0.0), 0.99))
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
                logger.warning("broker path faults now delay=%.3fs loss=%.2f", faults.delay_seconds, faults.loss)
            self._faults, self._read_at = faults, now
        return self._faults


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, control: FaultControl) -> None:
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
            faults = control.current()
            extra = faults.delay_seconds
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
    # Both directions end together: Kafka connections do not half-close.
    pumps = [
        asyncio.create_task(_pump(client_reader, broker_writer, control)),
        asyncio.create_task(_pump(broker_reader, client_writer, control)),
    ]
    await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
    await _close(broker_writer)
    await _close(client_writer)
    for pump in pumps:
        pump.cancel()
    await asyncio.gather(*pumps, return_exceptions=True)


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
