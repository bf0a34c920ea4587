"""Log sequence numbers: an ``int`` that prints and parses the way PostgreSQL does."""

from __future__ import annotations

from cdc.errors import ConfigError


class Lsn(int):
    """A WAL position. ``str(Lsn(0x16B374D848)) == "16/B374D848"``.

    It is an ``int`` so that comparisons and byte differences stay plain arithmetic; the hot
    path uses bare ints and wraps them only where they are shown or stored.
    """

    __slots__ = ()

    @classmethod
    def parse(cls, text: str) -> Lsn:
        hi, sep, lo = text.strip().partition("/")
        try:
            if not sep:
                raise ValueError(text)
            value = (int(hi, 16) << 32) | int(lo, 16)
        except ValueError:
            raise ConfigError(f"{text!r} is not an LSN; expected the form 16/B374D848") from None
        if value >> 64 or int(lo, 16) >> 32:
            raise ConfigError(f"{text!r} is out of range for an LSN")
        return cls(value)

    def __str__(self) -> str:
        return f"{int(self) >> 32:X}/{int(self) & 0xFFFFFFFF:X}"

    def __repr__(self) -> str:
        return f"Lsn('{self}')"


def format_lsn(value: int) -> str:
    return str(Lsn(value))
