"""Markdown for the per-demo ``report.md``, the tables a demo saves for READMEs, and the README blocks made from them.

A demo names the tables its README should show: ``markdown_table(rows, columns, name="accuracy")`` returns the
markdown (a ``str``) and ``write_report`` also saves every named table of the report to ``<out>/tables.json``. A
README then holds, between markers, the table as it is rendered from that file::

    <!-- results:interpretability-shortcut/accuracy -->
    ...                                   (written by `python reproduce.py`; never typed)
    <!-- /results -->

A benchmark's tables are cited by their folder from the repository root: ``results:benchmarks/results/NAME/TABLE``.

``update_blocks(text, results)`` rewrites every such block from ``<results>/<demo>/tables.json`` (reproduce.py
calls it on every README after its runs, ``reproduce.py --tables`` alone), and a test checks each block against
its file.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from common.io.atomic import atomic_path, save_json

TABLES_FILE = "tables.json"
BLOCK = re.compile(r"(<!-- results:(?P<name>[\w.\-/]+)/(?P<table>[\w.\-]+) -->\n)(?P<body>.*?)(<!-- /results -->)",
                   re.DOTALL)


def fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


class Table(str):
    """A markdown table (the ``str``) that keeps its rows, columns and name, so a report can save it."""

    name: str | None
    rows: list[dict]
    columns: list[str]
    digits: int


def markdown_table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None, digits: int = 3,
                   name: str | None = None) -> Table:
    rows = [dict(r) for r in rows]
    columns = list(columns or (rows[0].keys() if rows else []))
    if not rows:
        text = "_(no rows)_\n"
    else:
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(fmt(row.get(c, ""), digits) for c in columns) + " |" for row in rows]
        text = "\n".join(lines) + "\n"
    table = Table(text)
    table.name, table.columns, table.digits = name, columns, digits
    table.rows = [{c: _plain(row.get(c, "")) for c in columns} for row in rows]
    return table


def _plain(value: Any) -> Any:
    """JSON-safe cell: numpy scalars as Python numbers, NaN / inf as the text the table shows."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return fmt(value)
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)


def table_from_file(results: str | Path, demo: str, name: str) -> str:
    """The markdown of table ``name`` that demo ``demo`` saved under ``results``; KeyError if it saved none. A ``demo``
    with a slash is a folder relative to the repository (``results``' parent): ``benchmarks/results/cam_speed``."""
    path = (Path(results).parent if "/" in demo else Path(results)) / demo / TABLES_FILE
    if not path.is_file():
        raise KeyError(f"{path} does not exist (run `python reproduce.py --only {demo}`)")
    tables = json.loads(path.read_text())
    if name not in tables:
        raise KeyError(f"{path} has no table {name!r} (it has {', '.join(tables) or 'none'})")
    t = tables[name]
    return str(markdown_table(t["rows"], t["columns"], t["digits"]))


def update_blocks(text: str, results: str | Path) -> str:
    """``text`` with every results block rewritten from the tables under ``results``."""
    return BLOCK.sub(lambda m: m.group(1) + table_from_file(results, m["name"], m["table"]) + m.group(5), text)


def blocks(text: str) -> list[tuple[str, str, str]]:
    """(demo, table, body) of every results block in ``text``."""
    return [(m["name"], m["table"], m["body"]) for m in BLOCK.finditer(text)]


def write_report(out: str | Path, title: str, sections: Sequence[str]) -> Path:
    """Write ``<out>/report.md``: a title and markdown sections; figure links are relative to ``out``. Named tables
    among the sections (``markdown_table(..., name=...)``) are also saved to ``<out>/tables.json``."""
    out = Path(out)
    path = out / "report.md"
    named = {s.name: s for s in sections if isinstance(s, Table) and s.name}
    if named:
        save_json(out / TABLES_FILE, {k: {"columns": t.columns, "digits": t.digits, "rows": t.rows}
                                      for k, t in named.items()})
    with atomic_path(path) as tmp:
        tmp.write_text(f"## {title}\n\n" + "\n".join(s.rstrip() + "\n" for s in sections))
    return path
