"""Database helpers shared by the apps."""
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import QuerySet


@contextmanager
def statement_timeout(milliseconds: int) -> Iterator[None]:
    """Bound every statement in the block; PostgreSQL cancels one that runs longer."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [f"{int(milliseconds)}ms"])
        yield


def in_batches(queryset: QuerySet, *, batch_size: int, apply: Callable[[list], object]) -> int:
    """Call `apply` with the primary keys of matching rows, a batch per short transaction.

    Each batch locks its rows with SKIP LOCKED, so housekeeping never waits on
    (or holds up) the hot path for long, and two runs at once (two beats)
    split the work instead of queueing. Return how many rows were handled.
    """
    total = 0
    while True:
        with transaction.atomic():
            keys = list(
                queryset.select_for_update(skip_locked=True).order_by("pk").values_list("pk", flat=True)[:batch_size]
            )
            if not keys:
                return total
            apply(keys)
        total += len(keys)


def delete_in_batches(queryset: QuerySet, *, batch_size: int) -> int:
    """Delete the matching rows with `in_batches`; return how many went."""
    return in_batches(
        queryset, batch_size=batch_size, apply=lambda keys: queryset.model.objects.filter(pk__in=keys).delete()
    )


class ThreadConnections:
    """The database connections that pool threads keep between tasks, closable from another thread.

    Django gives every thread its own connection and closes it only when
    that thread asks; a pool thread left idle keeps its connection open for
    good. The pool's owner records each thread's connection with `hold()`
    and, once no task is running, closes them all with `close_all()`.
    """

    def __init__(self) -> None:
        self._held: "weakref.WeakSet[BaseDatabaseWrapper]" = weakref.WeakSet()
        self._lock = threading.Lock()

    def hold(self) -> None:
        """Record the calling thread's connection."""
        with self._lock:
            self._held.add(connections[DEFAULT_DB_ALIAS])

    def close_all(self) -> int:
        """Close every recorded connection; return how many were open.

        Only while none of the threads runs a task: Django lets another
        thread close a connection only when marked shared for the moment.
        """
        with self._lock:
            held, self._held = list(self._held), weakref.WeakSet()
        opened = 0
        for wrapper in held:
            opened += wrapper.connection is not None
            wrapper.inc_thread_sharing()
            try:
                wrapper.close()
            finally:
                wrapper.dec_thread_sharing()
        return opened
