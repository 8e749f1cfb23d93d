"""``report.html``: the sweep report as one self-contained page.

:func:`html_report` renders the report's markdown (:func:`rnnlab.report.markdown`, a small
fixed subset: headings, pipe tables, bullet lists, paragraphs, ``![alt](file.png)`` figures,
inline code and bold) into HTML, with every figure embedded as a ``data:`` URI, the style and
the table-sorting script inline: the file opens from disk in any browser, with no server and
no network. Clicking a column header sorts that table by it (numbers by value, ``—`` last;
click again to reverse); baseline rows stay at the bottom of their table.
"""

import base64
import html
import re
from pathlib import Path

_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)]+)\)$")

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem auto;
       max-width: 1200px; padding: 0 1rem; color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem;
     border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
nav ul { columns: 2; font-size: .9rem; }
.table-wrap { overflow-x: auto; margin: .6rem 0 1rem; }
table { border-collapse: collapse; font-size: .85rem; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: right;
         white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f0f3f7; cursor: pointer; position: sticky; top: 0;
           white-space: normal; }
thead th[aria-sort="ascending"]::after { content: " \\25B2"; }
thead th[aria-sort="descending"]::after { content: " \\25BC"; }
td.text { white-space: normal; text-align: left; min-width: 12em; max-width: 32em; }
tbody tr:nth-child(even) { background: #fafafa; }
tfoot td { background: #fff8e6; font-style: italic; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto;
                                         border: 1px solid #eee; }
figcaption { font-size: .85rem; color: #555; }
code { background: #f3f3f3; padding: 0 .2rem; border-radius: 3px; font-size: .85em; }
li { margin: .2rem 0; }
"""

SCRIPT = """
function sortKey(cell) {
  const v = cell.dataset.sort;
  return v === undefined || v === "" ? null : Number(v);
}
function sortTable(th) {
  const table = th.closest("table"), body = table.tBodies[0];
  const col = Array.from(th.parentNode.children).indexOf(th);
  const dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const ca = a.cells[col], cb = b.cells[col];
    const ka = sortKey(ca), kb = sortKey(cb);
    if (ka === null && kb === null) return dir * ca.textContent.localeCompare(cb.textContent);
    if (ka === null) return 1;
    if (kb === null) return -1;
    return dir * (ka - kb);
  });
  rows.forEach(r => body.appendChild(r));
  th.parentNode.querySelectorAll("th").forEach(h => h.removeAttribute("aria-sort"));
  th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
}
document.querySelectorAll("table.sortable thead th").forEach(th => {
  th.title = "click to sort";
  th.addEventListener("click", () => sortTable(th));
});
document.body.dataset.ready = "1";
"""


def sort_value(text: str) -> str:
    """The number a cell sorts by: its first number (``72,713`` -> 72713; ``2/3`` -> 0.667;
    ``12%`` -> 12), ``""`` (sorted last) when it has none or is ``—``."""
    text = text.replace("**", "").strip()
    frac = re.fullmatch(r"(\d+)\s*/\s*(\d+)", text)
    if frac:
        den = int(frac[2])
        return repr(int(frac[1]) / den) if den else ""
    m = _NUMBER.search(text)
    if not m or text.startswith("—"):
        return ""
    try:
        return repr(float(m[0].replace(",", "")))
    except ValueError:
        return ""


def _inline(text: str) -> str:
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _td(text: str) -> str:
    key = sort_value(text)
    wrap = " class='text'" if not key and len(text) > 24 else ""
    return f"<td data-sort='{key}'{wrap}>{_inline(text)}</td>"


def _table(lines: list[str]) -> str:
    header, body = _cells(lines[0]), [_cells(line) for line in lines[2:]]
    head = "".join(f"<th scope='col'>{_inline(h)}</th>" for h in header)
    rows, foot = [], []
    for cells in body:
        tds = "".join(_td(c) for c in cells)
        (foot if cells and cells[0].startswith("baseline") else rows).append(f"<tr>{tds}</tr>")
    tfoot = f"<tfoot>{''.join(foot)}</tfoot>" if foot else ""
    return (f"<div class='table-wrap'><table class='sortable'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody>{tfoot}</table></div>")


def _figure(alt: str, src: str, folder: Path) -> str:
    path = folder / src
    if not path.is_file():
        return f"<p><em>figure missing: {html.escape(src)}</em></p>"
    mime = "image/svg+xml" if path.suffix == ".svg" else "image/png"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure><img alt='{html.escape(alt, quote=True)}' src='data:{mime};base64,"
            f"{data}'><figcaption>{_inline(alt)}</figcaption></figure>")


def _anchor(text: str, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    name, i = base, 2
    while name in used:
        name, i = f"{base}-{i}", i + 1
    used.add(name)
    return name


def html_report(markdown_text: str, folder: str | Path, title: str = "rnnlab report") -> str:
    """The page for ``markdown_text``; figures are read from ``folder`` and embedded.

    Raises nothing for a missing figure: the page says which file is missing instead."""
    folder = Path(folder)
    lines = markdown_text.splitlines()
    parts: list[str] = []
    toc: list[tuple[str, str]] = []
    used: set[str] = set()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("|"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            parts.append(_table(lines[i:j]))
            i = j
        elif line.startswith("## "):
            anchor = _anchor(line[3:], used)
            toc.append((anchor, line[3:]))
            parts.append(f"<h2 id='{anchor}'>{_inline(line[3:])}</h2>")
            i += 1
        elif line.startswith("# "):
            parts.append(f"<h1>{_inline(line[2:])}</h1>")
            i += 1
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            parts.append(f"<ul>{''.join(items)}</ul>")
        elif _IMAGE.match(line.strip()):
            m = _IMAGE.match(line.strip())
            parts.append(_figure(m["alt"], m["src"], folder))
            i += 1
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(
                    ("|", "#", "- ")) and not _IMAGE.match(lines[i].strip()):
                para.append(lines[i])
                i += 1
            parts.append(f"<p>{_inline(' '.join(para))}</p>")
    nav = ""
    if len(toc) > 1:
        nav = ("<nav><ul>" + "".join(f"<li><a href='#{a}'>{_inline(t)}</a></li>"
                                     for a, t in toc) + "</ul></nav>")
    if parts and parts[0].startswith("<h1>"):
        parts.insert(1, nav)
    else:
        parts.insert(0, nav)
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            # nothing may load from anywhere: figures are data: URIs, style and script inline
            "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
            "img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
            + "\n".join(parts) + f"<script>{SCRIPT}</script></body></html>\n")
