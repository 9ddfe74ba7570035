"""User strings made safe to show: file names, header fields, metadata and model ids
are data, so control characters (ESC, newlines, ...) and undecodable bytes are shown
escaped and can neither drive a terminal nor forge a second line."""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    character = match.group()
    code = ord(character)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (Python's surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def shown(text: object) -> str:
    """`text` as one line of printable characters: control characters, line breaks and
    lone surrogates become backslash escapes (a backslash itself stays as it is)."""
    return _UNSAFE.sub(_escape, str(text))
