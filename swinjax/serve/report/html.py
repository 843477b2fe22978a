"""``index.html`` of the evaluation report: one self-contained page (inline style, no script,
the figures as relative links to the PNGs beside it) with the summary, the figures, the top
confusions and the per-class table."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th { background: #f0f0f0; } td.name { text-align: left; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.3em 0; }
"""

# The summary rows: key of the report's overall record, label, format.
_SUMMARY = (
    ("top1", "top-1 accuracy", "{:.2%}"),
    ("top5", "top-5 accuracy", "{:.2%}"),
    ("loss", "loss", "{:.4f}"),
    ("ece", "expected calibration error", "{:.2%}"),
    ("num_examples", "examples", "{}"),
    ("step", "checkpoint step", "{}"),
    ("split", "split", "{}"),
    ("tta", "test-time augmentation", "{}"),
)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], name_column: int = -1) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="name">{html.escape(str(v))}</td>'
            if i == name_column
            else f"<td>{html.escape(str(v))}</td>"
            for i, v in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def index_html(report: dict[str, Any], figures: dict[str, str], title: str) -> str:
    """The page for ``report`` (``report.json``'s content); ``figures``: caption -> PNG file
    name (relative to the page)."""
    overall = report["overall"]
    summary = [(label, fmt.format(overall[key])) for key, label, fmt in _SUMMARY if key in overall]
    confusions = [
        (c["true_name"], c["predicted_name"], c["count"], f"{c['share']:.1%}")
        for c in report["top_confusions"]
    ]
    per_class = [
        (
            r["class"],
            r["name"],
            f"{r['precision']:.3f}",
            f"{r['recall']:.3f}",
            f"{r['f1']:.3f}",
            r["support"],
        )
        for r in sorted(report["per_class"], key=lambda r: (r["f1"], r["class"]))
    ]
    images = "".join(
        f'<h2>{html.escape(caption)}</h2><a href="{html.escape(name)}">'
        f'<img src="{html.escape(name)}" alt="{html.escape(caption)}"></a>'
        for caption, name in figures.items()
    )
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        + _table(("", "value"), summary, name_column=0)
        + images
        + "<h2>top confusions</h2>"
        + _table(("true", "predicted as", "count", "share of true"), confusions, 0)
        + "<h2>per class (worst F1 first)</h2>"
        + _table(("class", "name", "precision", "recall", "F1", "support"), per_class, 1)
        + '<p>Numbers: <a href="report.json">report.json</a>.</p></body></html>\n'
    )
