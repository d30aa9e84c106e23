"""A self-contained HTML report (pure Python): sections of paragraphs, tables and inline images.

Everything is inline (CSS, PNG images as data URIs), so ``index.html`` opens from disk, from an
object store's download, or as a CI artifact, with no server and nothing fetched. Every value is
escaped; a section whose stage has not run says so instead of showing an empty table.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1d1d1f; }
header { background: #23395d; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; opacity: .85; }
nav { padding: 8px 32px; background: #eef2f7; position: sticky; top: 0; }
nav a { margin-right: 16px; color: #23395d; text-decoration: none; font-weight: 600; }
main { padding: 8px 32px 48px; max-width: 1200px; }
section { margin-top: 28px; }
h2 { border-bottom: 2px solid #23395d; padding-bottom: 4px; }
h3 { margin-bottom: 6px; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { border: 1px solid #cfd6e0; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #eef2f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #e3e7ee; margin: 6px 0 14px; }
.note { color: #5a6270; }
.missing { background: #fff6e0; border-left: 4px solid #e0a800; padding: 8px 12px; }
.figs { display: flex; flex-wrap: wrap; gap: 16px; }
.figs img { max-width: 560px; }
"""


# The page checks itself once loaded: it counts images that did not decode and tables without rows,
# records the counts on <body> (data-broken-images, data-empty-tables: what the browser test reads
# from the rendered DOM) and shows a warning at the top when something is broken.
SELF_CHECK = """
addEventListener("load", function () {
  var imgs = document.images, broken = 0, empty = 0, tables = document.querySelectorAll("table");
  for (var i = 0; i < imgs.length; i++) if (!imgs[i].complete || imgs[i].naturalWidth === 0) broken++;
  for (var j = 0; j < tables.length; j++) if (!tables[j].querySelector("tbody tr")) empty++;
  var b = document.body;
  b.setAttribute("data-images", imgs.length); b.setAttribute("data-broken-images", broken);
  b.setAttribute("data-tables", tables.length); b.setAttribute("data-empty-tables", empty);
  b.setAttribute("data-rendered", "1");
  if (broken || empty) {
    var w = document.createElement("p"); w.className = "missing";
    w.textContent = broken + " image(s) did not render and " + empty + " table(s) are empty";
    document.querySelector("main").prepend(w);
  }
});
"""


@dataclass
class Section:
    id: str
    title: str
    parts: list[str] = field(default_factory=list)

    def text(self, value: str, cls: str = "") -> Section:
        attr = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{attr}>{html.escape(value)}</p>")
        return self

    def heading(self, value: str) -> Section:
        self.parts.append(f"<h3>{html.escape(value)}</h3>")
        return self

    def pre(self, value: str) -> Section:
        """Preformatted text (a config file), folded away until clicked."""
        self.parts.append(f"<details><summary>show</summary><pre>{html.escape(value)}</pre></details>")
        return self

    def missing(self, value: str) -> Section:
        return self.text(value, "missing")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = "") -> Section:
        if not rows:
            return self.missing(f"no rows{': ' + caption if caption else ''}")
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
        body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self.parts.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        return self

    def images(self, pngs: Sequence[tuple[bytes, str]]) -> Section:
        """PNG images (bytes, alt text) side by side, inlined as data URIs."""
        tags = [
            f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
            for png, alt in pngs
        ]
        self.parts.append(f'<div class="figs">{"".join(tags)}</div>')
        return self


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f'<td class="num">{v:,.4f}</td>' if abs(v) < 1000 else f'<td class="num">{v:,.1f}</td>'
    if isinstance(v, int) and not isinstance(v, bool):
        return f'<td class="num">{v:,}</td>'
    return f"<td>{html.escape('' if v is None else str(v))}</td>"


def render(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    nav = "".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>{"".join(s.parts)}</section>' for s in sections
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style><script>{SELF_CHECK}</script></head><body>"
        f"<header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>"
        f"<nav>{nav}</nav><main>{body}</main></body></html>"
    )
