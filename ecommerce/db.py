"""Database helpers shared by the apps."""
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction


@contextmanager
def statement_timeout(milliseconds: int) -> Iterator[None]:
    """Bound every statement in the block; PostgreSQL cancels one that runs longer."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [f"{int(milliseconds)}ms"])
        yield
