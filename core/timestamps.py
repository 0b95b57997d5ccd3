"""The one wire format of a moment: ISO-8601 in UTC with a `Z` (events, carts, API)."""
from datetime import datetime, timezone


def utc_timestamp(moment: datetime) -> str:
    """Format an aware datetime as `2026-01-31T12:00:00.123456Z`."""
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
