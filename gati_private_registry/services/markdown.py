"""Markdown from users (READMEs, reviews) to HTML that is safe to put in a page.

Two steps, each done by a library built for it: markdown-it-py renders CommonMark plus
GitHub's tables and strikethrough (a maintained, spec-compliant port of markdown-it),
and nh3 (bindings to Rust's ammonia, an allow-list HTML sanitiser) keeps only harmless
tags and attributes. The sanitiser runs on the renderer's output, so raw HTML in the
Markdown is allowed to pass through the renderer and is then cleaned like everything
else: no ``script``/``style``/``iframe``, no ``on*`` attributes, no ``style``, links
only to http(s), mailto and relative URLs, every link ``rel="noopener noreferrer
nofollow"``. bleach was the other candidate; it is deprecated by its maintainers.
"""
from __future__ import annotations

from functools import lru_cache

import nh3
from markdown_it import MarkdownIt

TAGS = {"a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl",
        "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "ol",
        "p", "pre", "s", "span", "strong", "sub", "summary", "sup", "table", "tbody", "td",
        "tfoot", "th", "thead", "tr", "ul"}
ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title", "width", "height"},
              "code": {"class"}, "th": {"align"}, "td": {"align"}, "ol": {"start"}}
URL_SCHEMES = {"http", "https", "mailto"}
#: the largest text rendered (a README larger than this is cut)
MAX_INPUT = 512 * 1024

_md = MarkdownIt("commonmark", {"html": True, "linkify": False}).enable(["table", "strikethrough"])


@lru_cache(maxsize=512)
def render(text: str) -> str:
    """Markdown -> sanitised HTML. Never raises on odd input."""
    html = _md.render(text[:MAX_INPUT])
    return nh3.clean(html, tags=TAGS, attributes=ATTRIBUTES, url_schemes=URL_SCHEMES,
                     link_rel="noopener noreferrer nofollow",
                     clean_content_tags={"script", "style", "iframe", "object", "embed",
                                         "template", "noscript", "svg", "math"},
                     strip_comments=True)
