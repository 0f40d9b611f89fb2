"""A table as a reader sees it: GitHub Markdown, a LaTeX booktabs tabular, a standalone HTML page
(pandas' own writers). Used by the diagnostics and the analysis stage alike."""

from __future__ import annotations

import html

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
table { border-collapse: collapse; font-size: 14px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
p.note { max-width: 60em; color: #444; }
"""


def to_html(table: pd.DataFrame, *, title: str, note: str = "") -> str:
    """A standalone HTML page of the table, for the Snakemake report (which shows HTML inline,
    where a CSV or Markdown file would only download)."""
    body = table.to_html(index=False, border=0, na_rep="", escape=True)
    note_html = f'<p class="note">{html.escape(note)}</p>' if note else ""
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head>\n<body><h3>{html.escape(title)}</h3>{note_html}\n{body}\n</body></html>\n"
    )
