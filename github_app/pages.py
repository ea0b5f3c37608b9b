"""The one home of HTML: escaping and the page layout every HTML answer uses.

`/`, `/setup` and the preview build their bodies from small f-string fragments; every value that
enters one goes through `escape` (one function, so there is one rule), and `document` wraps a
body in the same head, style and security headers. Jinja2 would do the same with a dependency
the bot-side install does not need; these pages are a handful of short fragments.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when a response is built: the command line stays fast to start
    from starlette.responses import HTMLResponse

__all__ = ["STYLE", "document", "escape", "page"]

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:40rem;margin:3rem auto;
padding:0 1rem;color:#1f2328;line-height:1.5}
h1{font-size:1.5rem}h2{font-size:1.1rem;margin-top:2rem}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85rem}
code{background:#f6f8fa;padding:.1rem .3rem;border-radius:4px}
button,.button{display:inline-block;background:#1f883d;color:#fff;border:0;border-radius:6px;
padding:.6rem 1rem;font-size:1rem;text-decoration:none;cursor:pointer}
.warn{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:.5rem .8rem}
.meta{color:#656d76;font-size:.85rem}"""

HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY"}


def escape(value: object) -> str:
    """`value` as text safe inside HTML content and quoted attribute values."""
    return html.escape(str(value), quote=True)


def document(
    title: str,
    body: str,
    *,
    heading: str | None = None,
    style: str = "",
    head: str = "",
    body_attributes: str = "",
) -> str:
    """A whole page: `title` (escaped here), the shared style plus `style`, and `body` (HTML)."""
    shown = escape(title if heading is None else heading)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{escape(title)}</title><style>{STYLE}{style}</style>{head}</head>
<body{body_attributes}><h1>{shown}</h1>
{body}
</body></html>
"""


def page(
    title: str,
    body: str,
    status: int = 200,
    *,
    headers: Mapping[str, str] | None = None,
    **layout: str,
) -> HTMLResponse:
    """`document(title, body)` as a response that no cache keeps and no frame shows."""
    from starlette.responses import HTMLResponse

    return HTMLResponse(
        document(title, body, **layout), status_code=status, headers={**HEADERS, **(headers or {})}
    )
