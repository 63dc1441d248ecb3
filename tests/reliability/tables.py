"""The plain-text tables the reliability and quota suites print before they assert."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def render_table(
    header: Sequence[str], body: Iterable[Sequence[str]], problems: Iterable[tuple[str, str]] = ()
) -> str:
    """Columns padded to their widest cell, a rule under the header, then ``! scenario: problem`` lines."""
    lines_cells = [tuple(header), *(tuple(line) for line in body)]
    widths = [max(len(line[i]) for line in lines_cells) for i in range(len(header))]
    lines = [
        " | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in lines_cells
    ]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    lines.extend(f"  ! {scenario}: {problem}" for scenario, problem in problems)
    return "\n".join(lines)
