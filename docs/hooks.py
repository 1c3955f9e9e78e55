"""MkDocs hook: the docstrings' Sphinx roles (:class:`~a.b.C`) become code, linked where the name is a full path."""

import re

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):<code>(~?)([\w.]+)</code>")


def link(match: re.Match) -> str:
    short, name = match.groups()
    shown = name.rsplit(".", 1)[-1] if short else name
    if "." not in name:
        return f"<code>{shown}</code>"
    return f'<autoref identifier="{name}" optional><code>{shown}</code></autoref>'


def on_page_content(html: str, **kwargs) -> str:
    return ROLE.sub(link, html)
