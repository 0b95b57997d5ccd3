"""Database helpers shared by the apps."""
import functools
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, TypeVar

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model, QuerySet

ModelT = TypeVar("ModelT", bound=Model)


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


# Rows by key, with statements built once per model --------------------------
#
# Every order runs the same few single-row statements (lock the order, insert
# its outbox row, update its status...). Through the ORM each call builds its
# SQL anew (a queryset's compiler, its lookups, its select list), which was the
# largest part of a checkout's and of the order consumer's CPU in their
# profiles (bench/checkout_profile.py). These helpers build each statement once per
# model and prepare values and results with the fields' own methods
# (`pre_save`, `get_db_prep_save`, `from_db_value`), as `Model.save` and the
# SQL compiler do, so a model's fields stay the one statement of its columns.
# No library does this for Django (caching layers such as django-cachalot
# keep query results, not statements). They send no model signals (the
# project connects none) and are for plain concrete models, no inheritance.


class _Columns(NamedTuple):
    fields: tuple[Field, ...]
    sql: str  # the quoted columns, in the fields' order
    converters: tuple[tuple[Callable, ...], ...]  # each field's converters of a value read back
    attnames: tuple[str, ...]


@functools.cache
def _columns(model: type[Model]) -> _Columns:
    fields = tuple(model._meta.concrete_fields)
    return _Columns(
        fields=fields,
        sql=", ".join(connection.ops.quote_name(field.column) for field in fields),
        converters=tuple(tuple(field.get_db_converters(connection)) for field in fields),
        attnames=tuple(field.attname for field in fields),
    )


def columns_sql(model: type[Model]) -> str:
    """The model's columns, quoted, in the order `row_from_db` reads them: for a statement's select or RETURNING list."""
    return _columns(model).sql


def row_from_db(model: type[ModelT], row: Sequence[Any]) -> ModelT:
    """The instance of a row read in `columns_sql(model)`'s order, its values converted as the ORM converts them."""
    columns = _columns(model)
    values = []
    for field, field_converters, value in zip(columns.fields, columns.converters, row):
        for converter in field_converters:
            value = converter(value, field.cached_col, connection)
        values.append(value)
    return model.from_db(connection.alias, columns.attnames, values)


@functools.cache
def _select_sql(model: type[Model], field_name: str, lock: bool) -> str:
    columns = _columns(model).sql
    column = connection.ops.quote_name(model._meta.get_field(field_name).column)
    table = connection.ops.quote_name(model._meta.db_table)
    return f"SELECT {columns} FROM {table} WHERE {column} = %s" + (" FOR UPDATE" if lock else "")


def row_get(model: type[ModelT], field_name: str, value: Any, *, lock: bool = False) -> ModelT | None:
    """The row whose unique field `field_name` is `value` (None if none); `lock` holds it FOR UPDATE."""
    field = model._meta.get_field(field_name)
    if not (field.primary_key or field.unique):
        raise ValueError(f"{model.__name__}.{field_name} is not unique")
    with connection.cursor() as cursor:
        cursor.execute(_select_sql(model, field_name, lock), [field.get_db_prep_value(value, connection)])
        row = cursor.fetchone()
    return None if row is None else row_from_db(model, row)


@functools.cache
def _insert_sql(model: type[Model], count: int) -> tuple[str, tuple[Field, ...], tuple[Field, ...]]:
    meta = model._meta
    fields = tuple(field for field in meta.local_concrete_fields if field is not meta.auto_field)
    returning = tuple(meta.db_returning_fields) if meta.auto_field else ()
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = (
        f"INSERT INTO {connection.ops.quote_name(meta.db_table)} "
        f"({', '.join(connection.ops.quote_name(field.column) for field in fields)}) VALUES {', '.join([row] * count)}"
    )
    if returning:
        sql += " RETURNING " + ", ".join(connection.ops.quote_name(field.column) for field in returning)
    return sql, fields, returning


def rows_insert(instances: Sequence[Model]) -> None:
    """INSERT new instances of one model in one statement, as `save()` (or `bulk_create`) would.

    Defaults were applied when each instance was made; `auto_now(_add)`
    fields are stamped here; an auto-increment key comes back from the
    database. Nothing else is read back.
    """
    if not instances:
        return
    model = type(instances[0])
    sql, fields, returning = _insert_sql(model, len(instances))
    params = [
        field.get_db_prep_save(field.pre_save(instance, True), connection) for instance in instances for field in fields
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        keys = cursor.fetchall() if returning else []
    for index, instance in enumerate(instances):
        for field, value in zip(returning, keys[index] if keys else ()):
            setattr(instance, field.attname, value)
        instance._state.adding = False
        instance._state.db = connection.alias


def row_insert(instance: Model) -> None:
    """INSERT one new instance (see `rows_insert`)."""
    rows_insert([instance])


@functools.cache
def _update_sql(model: type[Model], field_names: tuple[str, ...]) -> tuple[str, tuple[Field, ...]]:
    meta = model._meta
    fields = tuple(meta.get_field(name) for name in field_names)
    assignments = ", ".join(f"{connection.ops.quote_name(field.column)} = %s" for field in fields)
    sql = (
        f"UPDATE {connection.ops.quote_name(meta.db_table)} SET {assignments} "
        f"WHERE {connection.ops.quote_name(meta.pk.column)} = %s"
    )
    return sql, fields


def row_update(instance: Model, field_names: Sequence[str]) -> None:
    """UPDATE the instance's row with its current values of `field_names`, as `save(update_fields=...)` would.

    An `auto_now` field is stamped only if it is named, as with
    `save(update_fields=...)`. A row that is gone raises, as there `save` does.
    """
    sql, fields = _update_sql(type(instance), tuple(field_names))
    params = [field.get_db_prep_save(field.pre_save(instance, False), connection) for field in fields]
    params.append(instance._meta.pk.get_db_prep_value(instance.pk, connection))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if cursor.rowcount != 1:
            raise DatabaseError(f"{type(instance).__name__} {instance.pk} did not update: its row is gone")


@functools.cache
def _related_sql(model: type[Model], field_name: str, related: str) -> tuple[str, Field]:
    meta, quote = model._meta, connection.ops.quote_name
    foreign_key = meta.get_field(related)
    target = foreign_key.related_model
    columns = ", ".join(
        [f"m.{quote(field.column)}" for field in _columns(model).fields]
        + [f"r.{quote(field.column)}" for field in _columns(target).fields]
    )
    sql = (
        f"SELECT {columns} FROM {quote(meta.db_table)} m "
        f"JOIN {quote(target._meta.db_table)} r ON m.{quote(foreign_key.column)} = r.{quote(target._meta.pk.column)} "
        f"WHERE m.{quote(meta.get_field(field_name).column)} = %s "
        f"ORDER BY m.{quote(foreign_key.column)}, m.{quote(meta.pk.column)}"
    )
    return sql, foreign_key


def rows_with_related(model: type[ModelT], field_name: str, value: Any, *, related: str) -> list[ModelT]:
    """The rows whose `field_name` is `value`, each with its `related` row (a foreign key), in one statement.

    Ordered by the related row's key (then the row's own). Nothing is locked.
    """
    sql, foreign_key = _related_sql(model, field_name, related)
    target, width = foreign_key.related_model, len(_columns(model).fields)
    field = model._meta.get_field(field_name)
    with connection.cursor() as cursor:
        cursor.execute(sql, [field.get_db_prep_value(value, connection)])
        rows = cursor.fetchall()
    found = []
    for row in rows:
        instance = row_from_db(model, row[:width])
        foreign_key.set_cached_value(instance, row_from_db(target, row[width:]))
        found.append(instance)
    return found
