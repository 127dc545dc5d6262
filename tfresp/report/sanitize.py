"""Allow-list sanitizer for the pre-rendered HTML snippets a concern may put in its report section.

The explanations concern ships highlighted text as small HTML snippets (``<span style="background: ...">``).
They are produced by tfresp from escaped user text, but report.json is a file anyone can edit, so the HTML
report never trusts them: only formatting tags survive, attributes are limited to ``class``/``title`` and a
``style`` made of colour / weight / spacing declarations; scripts, event handlers, URLs and everything else
are dropped, and all text is re-escaped.
"""
from __future__ import annotations

import html
import re
from html.parser import HTMLParser

ALLOWED_TAGS = {"span", "mark", "b", "strong", "i", "em", "u", "br", "p", "div", "small", "sub", "sup", "code",
                "table", "thead", "tbody", "tr", "td", "th", "ul", "ol", "li"}
VOID_TAGS = {"br"}
DROP_CONTENT = {"script", "style", "iframe", "object", "embed", "template", "noscript", "svg", "math"}
_STYLE_DECL = re.compile(r"^\s*(background|background-color|color|opacity|font-weight|font-style|padding|"
                         r"margin|border-radius|border-bottom|text-decoration)\s*:\s*([#0-9a-zA-Z(),.%\s\-]+)\s*$")


def _clean_style(value: str) -> str:
    decls = []
    for decl in value.split(";"):
        if not decl.strip():
            continue
        m = _STYLE_DECL.match(decl)
        if not m or "url" in m.group(2).lower() or "expression" in m.group(2).lower():
            continue
        decls.append(f"{m.group(1)}: {m.group(2).strip()}")
    return "; ".join(decls)


class _Sanitizer(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out = []
        self.stack = []
        self.dropping = 0

    def handle_starttag(self, tag, attrs):
        if tag in DROP_CONTENT:
            self.dropping += 1
            return
        if self.dropping or tag not in ALLOWED_TAGS:
            return
        parts = []
        for name, value in attrs:
            if value is None:
                continue
            if name in ("class", "title"):
                parts.append(f'{name}="{html.escape(value, quote=True)}"')
            elif name == "style":
                style = _clean_style(value)
                if style:
                    parts.append(f'style="{html.escape(style, quote=True)}"')
        self.out.append(f"<{tag}{' ' + ' '.join(parts) if parts else ''}>")
        if tag not in VOID_TAGS:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag in DROP_CONTENT:
            self.dropping -= 1
        elif tag in self.stack and tag not in VOID_TAGS and self.stack[-1] == tag:
            self.stack.pop()
            self.out.append(f"</{tag}>")

    def handle_endtag(self, tag):
        if tag in DROP_CONTENT:
            self.dropping = max(0, self.dropping - 1)
            return
        if self.dropping or tag not in ALLOWED_TAGS or tag in VOID_TAGS or tag not in self.stack:
            return
        while self.stack:  # close anything left open inside this element
            t = self.stack.pop()
            self.out.append(f"</{t}>")
            if t == tag:
                break

    def handle_data(self, data):
        if not self.dropping:
            self.out.append(html.escape(data, quote=False))


def sanitize_html(snippet: str) -> str:
    """Return ``snippet`` reduced to allowed tags/attributes, with every text node escaped.

    Example:
        >>> sanitize_html('<span style="background: #fdd" onclick="x()">bad</span><script>alert(1)</script>')
        '<span style="background: #fdd">bad</span>'
    """
    p = _Sanitizer()
    p.feed(str(snippet))
    p.close()
    p.out.extend(f"</{t}>" for t in reversed(p.stack))
    return "".join(p.out)
