"""Database helpers shared by the apps."""
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import connection, transaction
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
