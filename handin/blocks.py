"""The report's answers as plain blocks: written once, rendered twice.

Every answer is a list of blocks (JSON-ready dicts). `handin.html_report.render` turns them into report.html and
`handin.wandb_report` into a wandb Report; report.json stores them, so the two renderings show the same words,
table cells, numbers and figures with their captions. Answers are built by adding lists: `paragraph(a) + table(...)`.
"""
from pathlib import Path


def fmt_value(value):
    """3 significant digits for floats (learning rates print as 0.00215, not 0.0021538462071213733)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return ",".join(fmt_value(v) for v in value)
    return str(value)


def paragraph(text):
    return [{"type": "p", "text": text}]


def note(text):
    """A visible note where an answer is missing (or qualified)."""
    return [{"type": "note", "text": text}]


MISSING = "Missing — "


def missing(what):
    """A note where an answer or a figure should be and is not: the report counts these (`missing_notes`)."""
    return note(MISSING + what)


def missing_notes(blocks):
    """What the blocks say is missing (the text after "Missing — "), in order."""
    return [b["text"][len(MISSING):] for b in blocks if b["type"] == "note" and b["text"].startswith(MISSING)]


def expected_figure(path, caption, width, made_by):
    """A figure a finished step should have written; in its place, when absent, a note naming it and `made_by`."""
    if Path(path).is_file():
        return figure(path, caption, width)
    return missing(f"{Path(path).name} ({caption}): {path} is not there; {made_by} writes it")


def h4(text):
    return [{"type": "h4", "text": text}]


def preformatted(text):
    return [{"type": "pre", "text": text}]


def command(text):
    return [{"type": "command", "text": text}]


def link(text, url):
    """A line that links `url` (a paragraph cannot: both renderings escape its text)."""
    return [{"type": "link", "text": text, "url": url}]


def bullets(items):
    return [{"type": "list", "items": list(items)}]


def table(header, rows):
    return [{"type": "table", "header": [str(h) for h in header], "rows": [[fmt_value(c) for c in row] for row in rows]}]


def figure(path, caption, width):
    """An image file with its caption, shown `width` px wide in the page (a media panel in the wandb report)."""
    return [{"type": "figure", "path": str(path), "caption": caption, "width": width}]


def photos(figures):
    """Figures side by side (each: figure(...)[0])."""
    return [{"type": "photos", "items": list(figures)}]


def video(path, caption):
    return [{"type": "video", "path": str(path), "caption": caption}]


def markdown_table(header, rows):
    """A Markdown table (what a wandb report's Markdown block shows); '|' inside a cell is escaped."""
    def cell(text):
        return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
