"""Log sequence numbers: an ``int`` that prints and parses the way PostgreSQL does."""

from __future__ import annotations

import re

from cdc.errors import ConfigError

_LSN_TEXT = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


class Lsn(int):
    """A WAL position. ``str(Lsn(0x16B374D848)) == "16/B374D848"``.

    It is an ``int`` so that comparisons and byte differences stay plain arithmetic; the hot
    path uses bare ints and wraps them only where they are shown or stored.
    """

    __slots__ = ()

    @classmethod
    def parse(cls, text: str) -> Lsn:
        match = _LSN_TEXT.match(text)
        if match is None:
            raise ConfigError(f"{text!r} is not an LSN; expected the form 16/B374D848")
        return cls((int(match.group(1), 16) << 32) | int(match.group(2), 16))

    def __str__(self) -> str:
        return f"{int(self) >> 32:X}/{int(self) & 0xFFFFFFFF:X}"

    def __repr__(self) -> str:
        return f"Lsn('{self}')"


def format_lsn(value: int) -> str:
    """``16/B374D848``, without making an :class:`Lsn` first (once per transaction)."""
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"
