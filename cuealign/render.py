"""A table as a reader sees it: GitHub Markdown, a LaTeX booktabs tabular, a standalone HTML page
(pandas' own writers). Used by the diagnostics and the analysis stage alike."""

from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pandas through tabulate)."""
    # cells are already formatted text: tabulate must not re-read "0.510" as a number and print 0.51
    return table.to_markdown(index=False, tablefmt="github", disable_numparse=True) + "\n"


def to_latex(table: pd.DataFrame) -> str:
    """A booktabs tabular, every cell and header escaped for LaTeX."""
    styler = table.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
    return styler.to_latex(hrules=True, column_format="l" * len(table.columns))


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.2em; color: #222; }
div.frame { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 14px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; vertical-align: top; }
th { background: #f4f4f4; text-align: left; vertical-align: bottom; }
td { text-align: left; max-width: 40em; overflow-wrap: break-word; }
th.num { text-align: right; }
td.num { text-align: right; white-space: nowrap; }
p.note { max-width: 60em; color: #444; }
"""

# a cell that reads as a number, an interval, a count or a share (kept on one line, right-aligned)
_NUMERIC = re.compile(r"^[\s\d.,:;+\-\u2212%*<>=\[\]()/e]*\d[\s\d.,:;+\-\u2212%*<>=\[\]()/e]*$|^(nan|inf|-inf)?$")


def _numeric_columns(table: pd.DataFrame) -> list[bool]:
    """Per column: every filled cell reads as a number (an interval, a p-value, a count)."""
    flags = []
    for column in table.columns:
        cells = [str(v) for v in table[column] if not (isinstance(v, float) and np.isnan(v)) and str(v) != ""]
        flags.append(bool(cells) and all(_NUMERIC.match(cell) for cell in cells))
    return flags


def to_html(table: pd.DataFrame, *, title: str, note: str = "") -> str:
    """A standalone HTML page of the table, for the Snakemake report (which shows HTML inline,
    where a CSV or Markdown file would only download). Readable in the report's frame on a laptop
    screen: headers and text cells wrap, numbers stay on one line and right-aligned, and a table
    wider than its frame scrolls inside it, not the page (tests/workflow/test_default_study.py
    measures it in Chromium at 1,400 px)."""
    numeric = _numeric_columns(table)
    head = "".join(
        f"<th{' class=num' if num else ''}>{html.escape(str(column))}</th>"
        for column, num in zip(table.columns, numeric, strict=True)
    )
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=num' if num else ''}>{html.escape(_cell(value))}</td>"
            for value, num in zip(row, numeric, strict=True)
        )
        + "</tr>\n"
        for row in table.itertuples(index=False, name=None)
    )
    body = f'<div class="frame"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}</tbody></table></div>'
    note_html = f'<p class="note">{html.escape(note)}</p>' if note else ""
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head>\n<body><h3>{html.escape(title)}</h3>{note_html}\n{body}\n</body></html>\n"
    )


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)
