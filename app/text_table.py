"""Aligned plain-text tables for the CLI's printed results."""

from __future__ import annotations

from collections.abc import Sequence


def aligned(
    headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1, strip: bool = False
) -> list[str]:
    """The header, a rule of dashes and one line per row, columns two spaces apart.

    The first ``left`` columns are left-aligned, the others right-aligned; ``strip`` drops
    trailing spaces from the header and the rows.
    """
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        text = "  ".join(
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return text.rstrip() if strip else text

    return [line(headers), "  ".join("-" * w for w in widths), *map(line, rows)]
