"""Reading an executed notebook's outputs (shared by the notebook tests)."""

from __future__ import annotations

import json
from typing import Any

import nbformat


def outputs(notebook: nbformat.NotebookNode) -> list[dict[str, Any]]:
    """Every output of every code cell, in order."""
    return [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]


def summary(notebook: nbformat.NotebookNode) -> dict[str, Any]:
    """The JSON of the notebook's ``SUMMARY {...}`` line."""
    for out in outputs(notebook):
        if out.get("output_type") == "stream":
            for line in out["text"].splitlines():
                if line.startswith("SUMMARY "):
                    return json.loads(line.removeprefix("SUMMARY "))  # type: ignore[no-any-return]
    raise AssertionError("the notebook printed no SUMMARY line")
