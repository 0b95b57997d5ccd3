"""The API's JSON parser: hostile bodies are refused before any view sees them.

DRF's `JSONParser` turns syntax errors into 400s, but three kinds of valid JSON
still reach the views and break them further in: nesting deep enough to hit
Python's recursion limit, `\\ud800`-style escapes that decode to lone surrogates
(no UTF-8 encoding exists for them, so the first `.encode()` raises), and NUL
characters (PostgreSQL cannot store them in text). The body-size limit is
Django's `DATA_UPLOAD_MAX_MEMORY_SIZE`, which DRF enforces by reading
`request.body` before calling this parser; `core.problems` answers it 413.
"""
import re
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# A lone surrogate or a NUL: text that can be neither encoded nor stored.
_UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")


class BodyTooDeep(ParseError):
    default_detail = "The JSON body is nested too deeply."
    default_code = "body_too_deep"


class BodyUndecodable(ParseError):
    default_detail = "The JSON body holds text that is not valid Unicode (a lone surrogate or a NUL character)."
    default_code = "body_undecodable"


class GuardedJSONParser(JSONParser):
    """Parse JSON, then refuse bodies nested beyond `API_JSON_MAX_DEPTH` or holding unstorable text."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            # json's C scanner recurses once per level; far deeper than any
            # limit of ours, so it is the same answer.
            raise BodyTooDeep() from None
        json_tree_check(data, max_depth=settings.API_JSON_MAX_DEPTH)
        return data


def json_tree_check(data: Any, *, max_depth: int) -> None:
    """Raise `BodyTooDeep` or `BodyUndecodable` for a parsed JSON document.

    Iterative, so a document deep enough to be refused cannot exhaust the
    stack while being checked.
    """
    pending: list[tuple[Any, int]] = [(data, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, str):
            if _UNSTORABLE_TEXT.search(node):
                raise BodyUndecodable()
            continue
        if not isinstance(node, (dict, list)):
            continue
        if depth > max_depth:
            raise BodyTooDeep(f"The JSON body is nested deeper than {max_depth} levels.")
        if isinstance(node, dict):
            for key, value in node.items():
                pending.append((key, depth))
                pending.append((value, depth + 1))
        else:
            pending.extend((item, depth + 1) for item in node)
