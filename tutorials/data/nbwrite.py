"""Shared by the tutorial generators (make_*_tutorial.py): cell constructors and the notebook writer.

Cell ids are derived from the cells' text, so the same cells always give the same file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from textwrap import dedent

import nbformat


def md(text: str) -> tuple[str, str]:
    return ("markdown", dedent(text).strip("\n"))


def sql(text: str) -> tuple[str, str]:
    return ("code", dedent(text).strip("\n"))


def write(cells: list[tuple[str, str]], path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Kestrel (SQL)", "language": "sql", "name": "kestrel"},
        "language_info": {
            "codemirror_mode": "sql",
            "file_extension": ".sql",
            "mimetype": "text/x-sql",
            "name": "sql",
        },
    }
    seen: set[str] = set()
    for kind, text in cells:
        cell = nbformat.v4.new_markdown_cell(text) if kind == "markdown" else nbformat.v4.new_code_cell(text)
        digest = hashlib.sha1(text.encode()).hexdigest()
        cell_id = next(digest[i : i + 8] for i in range(0, 33) if digest[i : i + 8] not in seen)
        seen.add(cell_id)
        cell.id = cell_id
        nb.cells.append(cell)
    nbformat.validate(nb)
    nbformat.write(nb, path)
    print(f"wrote {path} ({len(nb.cells)} cells)")
