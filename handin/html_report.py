"""The hand-in document: report.json's answers rendered as one self-contained HTML page (images and the clip
embedded)."""
import base64
import datetime
import html
import io
from pathlib import Path
from PIL import Image


def embed_image(path, width, max_pixels=1400):
    """An <img> with the file embedded, downscaled to at most `max_pixels` wide, shown `width` px wide.
    Photos and photo grids (large as PNG) are embedded as JPEG; plots stay PNG (sharp lines, small)."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        if img.width > max_pixels:
            img = img.resize((max_pixels, round(img.height * max_pixels / img.width)), Image.LANCZOS)
        buffer = io.BytesIO()
        img.save(buffer, format="PNG")
        mime = "png"
        if Path(path).suffix.lower() in (".jpg", ".jpeg") or buffer.tell() > 400_000:
            buffer = io.BytesIO()
            img.save(buffer, format="JPEG", quality=85)
            mime = "jpeg"
        shown = min(width, img.width)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img src="data:image/{mime};base64,{data}" style="width:{shown}px;max-width:100%">'


def element(tag, text, css_class=None):
    attribute = f" class='{css_class}'" if css_class else ""
    return f"<{tag}{attribute}>{html.escape(text)}</{tag}>"


EMBED_VIDEO_BYTES = 30_000_000  # a longer clip is linked, not embedded: the page must still open quickly


def embed_video(path):
    """A <video> with the clip embedded (the report stays one self-contained file), or linked when it is large."""
    if Path(path).stat().st_size > EMBED_VIDEO_BYTES:
        return f'<video controls muted style="max-width:100%" src="{html.escape(Path(path).resolve().as_uri())}"></video>'
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<video controls muted loop style="max-width:100%" src="data:video/mp4;base64,{data}"></video>'


def render(blocks):
    """The blocks of one answer as HTML."""
    out = []
    for block in blocks:
        kind = block["type"]
        if kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block["header"])
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in block["rows"])
            out.append(f"<table><tr>{head}</tr>{rows}</table>")
        elif kind == "figure":
            out.append(f"<figure>{element('figcaption', block['caption'])}{embed_image(block['path'], block['width'])}"
                       f"</figure>")
        elif kind == "photos":
            out.append("<div class='photos'>" + "".join(
                f"<figure>{embed_image(item['path'], item['width'])}{element('figcaption', item['caption'])}</figure>"
                for item in block["items"]) + "</div>")
        elif kind == "video":
            out.append(f"<figure>{element('figcaption', block['caption'])}{embed_video(block['path'])}</figure>")
        else:
            out.append({"p": lambda b: element("p", b["text"]), "note": lambda b: element("p", b["text"], "note"),
                        "h4": lambda b: element("h4", b["text"]), "pre": lambda b: element("pre", b["text"]),
                        "list": lambda b: "<ul>" + "".join(element("li", item) for item in b["items"]) + "</ul>",
                        "command": lambda b: f"<p class='cmd'>{element('code', b['text'])}</p>",
                        "link": lambda b: f"<p><a href=\"{html.escape(b['url'])}\">{html.escape(b['text'])}</a></p>",
                        }[kind](block))
    return "".join(out)


def build_document(title, sections, path, preamble=()):
    """sections: [(heading, blocks)] → one self-contained page (every image and the clip embedded); a section
    without blocks is a part's heading (h2), the others its questions (h3)."""
    body = "\n".join(f"<h2>{html.escape(h)}</h2>" if b is None else f"<h3>{html.escape(h)}</h3>\n{render(b)}"
                     for h, b in sections)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    banner = render(preamble)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
            "body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;line-height:1.45;color:#222}"
            "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
            "th{background:#f2f5f9}h2{border-bottom:2px solid #2166ac;margin-top:2em}h3{margin-top:1.6em}"
            "h4{margin:1.2em 0 .3em}pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:13px}"
            ".cmd code{background:#f4f4f4;padding:2px 6px;display:inline-block}"
            ".note{background:#fff4d6;border:1px solid #e0c36a;padding:.6em 1em}"
            ".photos{display:flex;flex-wrap:wrap;gap:12px}.photos figure{margin:0;width:420px}"
            "figure{margin:.8em 0}figcaption{font-size:13px;font-weight:bold;margin:.3em 0}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>generated {stamp}</p>{banner}{body}</body></html>")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(page)
    return Path(path)
