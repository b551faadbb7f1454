"""Text from elsewhere made harmless to show: the one rule for every face (terminal, log, image,
CSV; HTML escapes as well). Pure and dependency-free, so that the lean daemon can use it for its
log lines without loading rich."""

from __future__ import annotations

import logging

__all__ = ["printable", "PrintableLogs"]


def printable(value: object) -> str:
    """The text with every character that could act on a terminal (C0 and C1 controls such as ESC,
    bidi overrides, zero-width and other format characters, line and paragraph separators,
    unassigned code points) replaced by a visible escape such as `\\x1b` or `\\u202e`; other
    spaces become a plain space. Written by hand because no library does exactly this: rich's
    Text.from_ansi interprets escapes rather than showing them, and `repr` would also escape
    quotes and backslashes that are fine as they are."""
    text = "" if value is None else str(value)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif ch.isspace() and ch not in "\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\u2028\u2029":
            out.append(" ")  # tab, no-break space and the like
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


class PrintableLogs(logging.Filter):
    """Makes every log line printable: a peer's name or a request path in a log message cannot
    clear an administrator's terminal or forge a second log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = printable(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True
