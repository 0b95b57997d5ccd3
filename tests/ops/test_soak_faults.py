"""The soak's new faults, each done for real and undone: a client cut at the proxy, a crashed postmaster, a held transaction.

The faults that need a whole platform (a web worker or a relay frozen while
it holds row locks, Redis's data lost) run in the short soak (test_soak.py).
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg2
import pytest

from ops.drills import faults
from ops.drills.broker_proxy import kafka_client_id, proxy_faults_write
from tests.servers import free_port
from tests.support import ROOT, accepting, database_url_for_tests, wait_for
from tests.unit_support import _clean_cache, _clean_shared_state  # noqa: F401 (nothing here touches Redis)


def kafka_request(client_id: str) -> bytes:
    """A Kafka request header as clients send it (ApiVersions v1: api key 18), then a byte of body."""
    name = client_id.encode()
    body = (18).to_bytes(2, "big") + (1).to_bytes(2, "big") + (7).to_bytes(4, "big") + len(name).to_bytes(2, "big") + name + b"\x00"
    return len(body).to_bytes(4, "big") + body


@pytest.mark.unit
def test_the_client_id_is_read_from_a_request_header():
    assert kafka_client_id(kafka_request("order-service-group-42")) == "order-service-group-42"
    assert kafka_client_id(kafka_request("")) == ""
    assert kafka_client_id(b"\x00\x00\x00\x05\x00\x12") is None  # cut short: nothing to read
    assert kafka_client_id(b"\x00\x00\x00\x0a\x00\x12\x00\x01\x00\x00\x00\x07\xff\xff") is None  # a null client id


@pytest.fixture
def proxied_echo(tmp_path):
    """The broker proxy in front of a TCP echo server; yields (proxy port, control file)."""
    echo = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                connection, _ = echo.accept()
            except OSError:
                return
            threading.Thread(target=_echo_one, args=(connection,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    port, control = free_port(), tmp_path / "faults.json"
    proxy = subprocess.Popen(
        [sys.executable, "-m", "ops.drills.broker_proxy", "--listen", f"127.0.0.1:{port}", "--target", f"127.0.0.1:{echo.getsockname()[1]}",
         "--control", str(control)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: accepting(port), timeout=15, what="the proxy listening")
        yield port, control
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        echo.close()


def _echo_one(connection: socket.socket) -> None:
    with connection:
        try:
            while data := connection.recv(4096):
                connection.sendall(data)
        except OSError:
            pass


def _round_trip(port: int, client_id: str, *, sock: socket.socket | None = None) -> bytes:
    """Send a request as `client_id` and read the echo; b"" when the proxy closed the connection."""
    connection = sock or socket.create_connection(("127.0.0.1", port), timeout=5)
    request = kafka_request(client_id)
    try:
        connection.sendall(request)
        received = b""
        while len(received) < len(request):
            chunk = connection.recv(4096)
            if not chunk:
                return received
            received += chunk
        return received
    except (ConnectionResetError, BrokenPipeError):
        return b""
    finally:
        if sock is None:
            connection.close()


@pytest.mark.unit
def test_a_cut_client_loses_its_connections_while_the_others_still_get_through(proxied_echo):
    port, control = proxied_echo
    request = kafka_request("order-service-group-1")
    consumer = socket.create_connection(("127.0.0.1", port), timeout=5)
    assert _round_trip(port, "order-service-group-1", sock=consumer) == request  # connected before the cut

    proxy_faults_write(control, cut_clients=("order-service-group",))
    time.sleep(1.2)  # the proxy re-reads its faults twice a second

    assert consumer.recv(16) == b""  # the open connection was closed, idle as it was
    assert _round_trip(port, "order-service-group-1") == b""  # and a new one is refused at its first request
    assert _round_trip(port, "ecommerce-outbox-1") == kafka_request("ecommerce-outbox-1")  # the relay still gets through
    control.unlink()
    time.sleep(1.2)
    assert _round_trip(port, "order-service-group-1") == request  # healed
    consumer.close()


@pytest.mark.unit
def test_a_slowed_client_waits_while_the_others_do_not(proxied_echo):
    port, control = proxied_echo
    proxy_faults_write(control, slow_clients={"ecommerce-outbox": 0.4})
    time.sleep(1.2)

    started = time.monotonic()
    assert _round_trip(port, "ecommerce-outbox-7")
    slowed = time.monotonic() - started
    started = time.monotonic()
    assert _round_trip(port, "order-service-group-7")
    direct = time.monotonic() - started

    assert slowed >= 0.8 > direct  # 0.4 s each way for the slowed client only


# --- PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture
def own_cluster():
    """A PostgreSQL cluster of the test's own (initdb, pg_ctl), which it may crash; stopped and removed afterwards."""
    bindir = Path(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip())
    if not (bindir / "initdb").exists():
        pytest.fail(f"initdb is missing from {bindir}: install Debian's postgresql package")
    # Not under pytest's temporary directory, which only its user may enter.
    home = Path(tempfile.mkdtemp(prefix="soak-cluster-"))
    data, port = home / "data", free_port()
    run_as: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: the cluster belongs to postgres
        run_as = ["runuser", "-u", "postgres", "--"]
        shutil.chown(home, user="postgres")
    pg_ctl = [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(home / "log"), "-w"]
    try:
        subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"], check=True, capture_output=True)
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{home}'\nfsync = off\n")
        subprocess.run([*pg_ctl, "start"], check=True, capture_output=True)
        yield f"postgres://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], check=False, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def _query(url: str, statement: str):
    connection = psycopg2.connect(url, connect_timeout=3)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
            return cursor.fetchall() if cursor.description else None
    finally:
        connection.close()


def test_a_crashed_postmaster_takes_connections_down_and_comes_back_with_what_was_committed(own_cluster, tmp_path):
    _query(own_cluster, "CREATE TABLE kept (value int); INSERT INTO kept VALUES (42)")
    before = faults.postmaster_info(own_cluster)
    site = faults.Site(root=ROOT, run_dir=tmp_path, kafka_port=0, bootstrap_servers=[], redis_url="", database_url=own_cluster)

    with faults.postgres_crashed(site):
        assert site.postgres_crash_note.exists()  # `scripts/drill.sh reset` could start it from here
        wait_for(lambda: not Path(f"/proc/{before.pid}").exists(), timeout=10, what="the postmaster gone")
        with pytest.raises(psycopg2.OperationalError):
            _query(own_cluster, "SELECT 1")

    assert _query(own_cluster, "SELECT value FROM kept") == [(42,)]  # crash recovery kept the committed row
    assert faults.postmaster_info(own_cluster).pid != before.pid
    assert not site.postgres_crash_note.exists()


def test_a_crash_is_refused_on_a_cluster_that_serves_other_databases():
    # The suite's own cluster serves every worker's database (and others'): it must never be crashed.
    with pytest.raises(faults.DrillError, match="also serves"):
        faults.service_sole_user_check(database_url=database_url_for_tests())


@pytest.mark.django_db
def test_a_held_transaction_holds_the_xmin_horizon_until_the_fault_ends():
    url = database_url_for_tests()
    held = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ecommerce-drill-held-transaction' AND backend_xmin IS NOT NULL"

    with faults.transaction_held_open(url):
        assert _query(url, held) == [(1,)]

    assert _query(url, held) == [(0,)]
