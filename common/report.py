"""Markdown pieces for the per-demo ``report.md`` that reproduce.py gathers into results/REPORT.md."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from common.io.atomic import atomic_path


def fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None, digits: int = 3) -> str:
    rows = list(rows)
    if not rows:
        return "_(no rows)_\n"
    columns = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(c, ""), digits) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_report(out: str | Path, title: str, sections: Sequence[str]) -> Path:
    """Write ``<out>/report.md``: a title and markdown sections; figure links are relative to ``out``."""
    path = Path(out) / "report.md"
    with atomic_path(path) as tmp:
        tmp.write_text(f"## {title}\n\n" + "\n".join(s.rstrip() + "\n" for s in sections))
    return path
