"""How names from a hostile tree are shown: escaped for people, lossless for machines.

A file name is a string of bytes that may hold anything but ``/`` and NUL: newlines,
escape sequences, bytes that are not UTF-8. Printed raw, such a name can forge a log
line or a listing. genarc therefore shows every name, and every message that may hold
one, in one escaped form (docs/cli.md, "Names in output"):

    \\\\        a backslash
    \\n \\t \\r  newline, tab, carriage return
    \\xNN      a byte that is not part of valid UTF-8 (NN in hex)
    \\u{N}     any other character that is not printable (ESC is \\u{1b})

Every backslash in the output starts one of these forms, so the escaped text is
unambiguous and can be turned back into the exact bytes.

Inside genarc a name is a ``str`` made from the OS's bytes with ``surrogateescape`` (as
``os.fsdecode`` does), so bytes that are not UTF-8 survive as U+DC80..U+DCFF.
"""

from __future__ import annotations

import base64
import dataclasses
import os
from typing import Any

_SHORT = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _as_text(value: str | bytes) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    try:  # normalize: a name made by os.fsdecode round-trips; valid UTF-8 inside it is decoded
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that did not come from a byte
        return value


def escape(value: str | bytes) -> str:
    """The unambiguous, printable form of a name or of a message holding names."""
    out = []
    for char in _as_text(value):
        code = ord(char)
        if char in _SHORT:
            out.append(_SHORT[char])
        elif 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif not char.isprintable() and char != " ":
            out.append(f"\\u{{{code:x}}}")
        else:
            out.append(char)
    return "".join(out)


def unescape(text: str) -> bytes:
    """The exact bytes an :func:`escape`d name stands for."""
    out = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\":
            out += char.encode("utf-8")
            i += 1
            continue
        kind = text[i + 1]
        if kind == "x":
            out.append(int(text[i + 2:i + 4], 16))
            i += 4
        elif kind == "u":
            end = text.index("}", i)
            out += chr(int(text[i + 3:end], 16)).encode("utf-8", "surrogatepass")
            i = end + 1
        else:
            out += {"\\": b"\\", "n": b"\n", "t": b"\t", "r": b"\r"}[kind]
            i += 2
    return bytes(out)


def valid_text(value: Any) -> Any:
    """``value`` for ``--json``: every string that is not valid UTF-8 (a name's bad bytes) in the escaped form.

    Dataclasses become dicts. Strings that are valid text stay exact; JSON escapes their control characters.
    """
    if isinstance(value, str):
        return escape(value) if any(0xDC80 <= ord(c) <= 0xDCFF for c in value) else value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {valid_text(k): valid_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [valid_text(v) for v in value]
    return value


def lossless(name: str, field: str = "path") -> dict[str, Any]:
    """A name for ``--json``: ``field`` holds the text; when the name is not valid UTF-8, that text
    replaces the bad bytes with U+FFFD and ``<field>_bytes`` holds the exact bytes in base64."""
    raw = os.fsencode(name)
    try:
        return {field: raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {field: raw.decode("utf-8", "replace"), f"{field}_bytes": base64.b64encode(raw).decode("ascii")}
