"""CPU time of a running platform's processes, by group, read from /proc.

The platform is the processes under its supervisord (web, worker, beat,
consumer, Flower, Prometheus, Alertmanager, the provider, the restart
listener), the broker and its fault proxy that `scripts/services.sh` started
for it (pid files in the run directory), the Redis server on its port, and
the PostgreSQL server (the postmaster and every backend).

A process that exits during a measurement (a PostgreSQL backend whose
connection was closed, a web worker recycled) takes its CPU time with it;
the kernel adds it to its parent's "children" counters when the parent
reaps it. So a group's CPU over an interval is what its live processes
used, plus what its processes' reaped children used, minus what the exited
ones had used before the interval began (counted again in their parent's
children counter). The postmaster reaps the backends, so PostgreSQL's figure
includes every connection opened and closed during the run, on any of its
databases: measure on an otherwise quiet server.

psutil would read the same counters; it is not a dependency of the project
and /proc is a few lines here (Linux only, like the platform's supervision).
"""
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# First match wins: the command line of each platform process, to its group.
GROUPS: tuple[tuple[str, re.Pattern], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("web", r"gunicorn"),
        ("consumer", r"consume_orders"),
        ("worker", r"celery\b.*\bworker\b"),
        ("beat", r"celery\b.*\bbeat\b"),
        ("flower", r"flower"),
        ("provider", r"payment_provider"),
        ("broker-proxy", r"broker_proxy"),
        ("broker", r"tansu"),
        ("alertmanager", r"alertmanager"),
        ("prometheus", r"prometheus"),
        ("redis", r"redis-server"),
        # Backends and helpers ("postgres: ..."), and the postmaster by its
        # executable ("/usr/lib/postgresql/15/bin/postgres -D ...").
        ("postgresql", r"^(\S*/)?postgres(:|\s|$)"),
        ("supervisor", r"supervisor"),
    )
)


@dataclass(frozen=True)
class ProcessTimes:
    pid: int
    parent: int
    group: str
    own_ticks: int  # utime + stime
    children_ticks: int  # cutime + cstime: what its reaped children used
    command: str


def _read(pid: int) -> tuple[int, int, int, str] | None:
    """(parent pid, own ticks, reaped children's ticks, command line) of a live process; None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The second field, the name, is in parentheses and may hold spaces: split after its last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    parent, utime, stime, cutime, cstime = (int(fields[index]) for index in (1, 11, 12, 13, 14))
    return parent, utime + stime, cutime + cstime, command


def group_of(command: str) -> str:
    for name, pattern in GROUPS:
        if pattern.search(command):
            return name
    return "other"


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _descendants(roots: set[int], parents: dict[int, int]) -> set[int]:
    found = set(roots)
    changed = True
    while changed:
        changed = False
        for pid, parent in parents.items():
            if parent in found and pid not in found:
                found.add(pid)
                changed = True
    return found


@dataclass(frozen=True)
class PlatformProcesses:
    """How to find one platform's processes: its run directory's pid files, its Redis port."""

    run_dir: Path
    redis_port: int = 6379

    def _pid_file(self, pattern: str) -> set[int]:
        pids = set()
        for path in self.run_dir.glob(pattern):
            try:
                pids.add(int(path.read_text().strip()))
            except (OSError, ValueError):
                continue
        return pids

    def snapshot(self) -> dict[int, ProcessTimes]:
        read = {pid: found for pid in _all_pids() if (found := _read(pid)) is not None}
        parents = {pid: found[0] for pid, found in read.items()}
        roots = self._pid_file("supervisord.pid") | self._pid_file("tansu-*.pid") | self._pid_file("kafka-proxy-*.pid")
        for pid, (parent, _, _, command) in read.items():
            if group_of(command) == "postgresql" and group_of(read.get(parent, (0, 0, 0, ""))[3]) != "postgresql":
                roots.add(pid)  # the postmaster, whose children counter holds the backends that exited
            elif "redis-server" in command and f":{self.redis_port}" in command:
                roots.add(pid)
        ours = _descendants(roots & read.keys(), parents)
        return {
            pid: ProcessTimes(pid, read[pid][0], group_of(read[pid][3]), read[pid][1], read[pid][2], read[pid][3])
            for pid in ours
        }


def cpu_seconds_by_group(before: dict[int, ProcessTimes], after: dict[int, ProcessTimes]) -> Counter:
    """CPU seconds each group used between two snapshots (see the module's docstring)."""
    ticks: Counter = Counter()
    for pid, now in after.items():
        then = before.get(pid)
        ticks[now.group] += now.own_ticks - (then.own_ticks if then else 0)
        if then is not None:
            ticks[now.group] += now.children_ticks - then.children_ticks  # children reaped meanwhile
    for pid, then in before.items():
        if pid not in after and then.parent in after:
            # Exited and reaped by a parent we still see: its lifetime is in that parent's
            # children counter (counted above, in the parent's group); take off what came before.
            ticks[after[then.parent].group] -= then.own_ticks
    return Counter({group: value / CLOCK_TICKS for group, value in ticks.items()})


def postgres_backends(snapshot: dict[int, ProcessTimes], database: str) -> set[int]:
    """The backends serving `database` (their command line: `postgres: USER DATABASE HOST(PORT) STATE`)."""
    return {
        pid
        for pid, process in snapshot.items()
        if process.group == "postgresql" and re.match(rf"postgres: \S+ {re.escape(database)} ", process.command)
    }


def tcp_socket_inodes(local_port: int, peer_port: int | None = None) -> set[str]:
    """Inodes of this host's TCP sockets on `local_port` (connected to `peer_port`, if given), IPv4 and IPv6."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rpartition(":")[2], 16) != local_port:
                continue
            if peer_port is None or int(fields[2].rpartition(":")[2], 16) == peer_port:
                inodes.add(fields[9])
    return inodes


def socket_owner(inodes: set[str], candidates: Iterable[int]) -> int | None:
    """The first of `candidates` holding one of the sockets (by inode), or None."""
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for pid in candidates:
        try:
            links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        except OSError:
            continue
        if links & wanted:
            return pid
    return None
