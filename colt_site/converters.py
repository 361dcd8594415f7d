"""The one checked path from user text to a database id: ASCII digits, at most 18 of them (an id
that fits a signed 64-bit column), so a 30-digit id is "not found", never an OverflowError."""

from __future__ import annotations

import re

ID_PATTERN = "[0-9]{1,18}"
_ID = re.compile(ID_PATTERN)


class IdConverter:
    """``<id:run_id>`` in URL patterns: a longer number does not match (404)."""

    regex = ID_PATTERN

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


def parse_id(text: str) -> int | None:
    """An id from query text, or None when it is not one."""
    return int(text) if isinstance(text, str) and _ID.fullmatch(text) else None
