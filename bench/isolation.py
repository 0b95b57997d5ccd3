"""What keeps a bench off a running platform's data: a database and a Redis database of the bench's own."""
import os
from urllib.parse import urlsplit, urlunsplit


def bench_url(variable: str, default: str, path: str) -> str:
    """The server of `variable`'s URL with the bench's own database: never the platform's, whatever is exported."""
    return urlunsplit(urlsplit(os.environ.get(variable) or default)._replace(path=path))


def ensure_database() -> None:
    """Create the database Django's settings name, if it does not exist yet (before migrating it)."""
    import psycopg2
    from django.conf import settings
    from psycopg2 import sql

    db = settings.DATABASES["default"]
    admin = psycopg2.connect(dbname="postgres", user=db["USER"], host=db["HOST"], port=db["PORT"] or 5432)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]])
        if not cursor.fetchone():
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))
    admin.close()
