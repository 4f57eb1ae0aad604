"""Sizes as people read them."""

from __future__ import annotations

_IEC = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_SI = ("B", "KB", "MB", "GB", "TB", "PB")


def human_bytes(n: float, si: bool = False) -> str:
    """``1.5 MiB`` (powers of 1024), or with ``si`` ``1.6 MB`` (powers of 1000), as price lists count."""
    units, step = (_SI, 1000) if si else (_IEC, 1024)
    for unit in units:
        if abs(n) < step or unit == units[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= step
    raise AssertionError("unreachable")
