"""Go's string quoting and integer parsing, so error texts and accepted input match podman."""

from __future__ import annotations

import re

_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    '"': '\\"',
    "\\": "\\\\",
}
_ATOI = re.compile(r"[+-]?[0-9]+")


def go_quote(s: str) -> str:
    """Quote ``s`` as Go's ``strconv.Quote`` (and so ``%q``) does."""
    out = ['"']
    for ch in s:
        cp = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif 0xD800 <= cp <= 0xDFFF:
            # A lone surrogate stands for bytes that are not UTF-8 (surrogateescape
            # for 0xDC80..0xDCFF); Go prints invalid bytes one by one as \xNN.
            if 0xDC80 <= cp <= 0xDCFF:
                raw = bytes([cp - 0xDC00])
            else:
                raw = ch.encode("utf-8", "surrogatepass")
            out.extend(f"\\x{b:02x}" for b in raw)
        elif ch.isprintable():
            out.append(ch)
        elif cp < 0x20 or cp == 0x7F:
            out.append(f"\\x{cp:02x}")
        elif cp < 0x10000:
            out.append(f"\\u{cp:04x}")
        else:
            out.append(f"\\U{cp:08x}")
    out.append('"')
    return "".join(out)


def go_atoi(s: str) -> int | None:
    """Parse a decimal integer as Go's ``strconv.Atoi`` accepts it, or None."""
    if _ATOI.fullmatch(s) is None:
        return None
    return int(s)
