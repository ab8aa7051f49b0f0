"""Read an uploaded file into documents: Markdown, plain text, HTML, PDF, or JSONL records.

Django-free. Every format becomes the Markdown-like text ``chunking.py`` cuts (HTML headings become
``#`` lines; a PDF is its pages' text). All or nothing, like the prompt import: every problem is
collected with the file, line, record or field it is about, and ``KnowledgeInputError`` carries the
list; the caller stores nothing when it is raised. Every input is bounded (``Limits``): the file's
size, a JSONL line's length, the number of records, a document's text, a PDF's pages.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import PurePath

EXTENSIONS = {
    ".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text",
    ".html": "html", ".htm": "html", ".pdf": "pdf", ".jsonl": "jsonl",
}
MAX_PROBLEMS = 50
HTML_SKIP = ("script", "style", "noscript", "template", "svg", "nav", "head")
HTML_BLOCKS = ("p", "li", "pre", "blockquote", "dt", "dd", "tr", "caption", "figcaption")


@dataclass(frozen=True)
class Limits:
    file_bytes: int = 20 * 1024 * 1024
    document_chars: int = 2_000_000
    records: int = 10_000
    line_bytes: int = 1024 * 1024
    pdf_pages: int = 2_000
    title_chars: int = 300
    source_chars: int = 255
    url_chars: int = 2000


@dataclass(frozen=True)
class ParsedDocument:
    source: str
    title: str
    url: str
    content_type: str
    text: str
    sha256: str
    size_bytes: int


class KnowledgeInputError(ValueError):
    """The file cannot be stored; ``problems`` names each one (file, line, field). Nothing was written."""

    def __init__(self, problems: list[str]):
        self.problems = problems[:MAX_PROBLEMS]
        more = len(problems) - len(self.problems)
        if more > 0:
            self.problems.append(f"... and {more} more problems")
        super().__init__("; ".join(self.problems[:3]) + (" ..." if len(self.problems) > 3 else ""))


def content_type_of(name: str) -> str | None:
    return EXTENSIONS.get(PurePath(name).suffix.lower())


def parse_file(name: str, data: bytes, *, limits: Limits | None = None) -> list[ParsedDocument]:
    """The documents in one uploaded file (one, or one per JSONL record); raises ``KnowledgeInputError``."""
    limits = limits or Limits()
    name = PurePath(name or "").name.strip()
    if not name:
        raise KnowledgeInputError(["the file has no name"])
    kind = content_type_of(name)
    if kind is None:
        raise KnowledgeInputError([f"{name}: unsupported file type; upload .md, .txt, .html, .pdf or .jsonl"])
    if len(data) > limits.file_bytes:
        raise KnowledgeInputError([f"{name}: {len(data):,} bytes is over the limit of {limits.file_bytes:,}"])
    if len(name) > limits.source_chars:
        raise KnowledgeInputError([f"{name[:60]}...: the file name is over {limits.source_chars} characters"])
    if kind == "jsonl":
        return _jsonl(name, data, limits)
    if kind == "pdf":
        title, text = _pdf(name, data, limits)
    else:
        raw = _decode(name, data)
        title, text = _html(raw) if kind == "html" else (_first_heading(raw), raw.replace("\r\n", "\n"))
    text = text.strip()
    problems = _check_text(name, text, limits)
    if problems:
        raise KnowledgeInputError(problems)
    title = (title or PurePath(name).stem)[: limits.title_chars]
    return [ParsedDocument(source=name, title=title, url="", content_type=kind, text=text,
                           sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))]


def _decode(name: str, data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise KnowledgeInputError([f"{name}, line {line}: not UTF-8 text (byte {exc.start})"]) from None
    return text.replace("\x00", "")


def _check_text(where: str, text: str, limits: Limits) -> list[str]:
    if not text:
        return [f"{where}: no text found"]
    if len(text) > limits.document_chars:
        return [f"{where}: {len(text):,} characters of text is over the limit of {limits.document_chars:,}"]
    return []


def _first_heading(text: str) -> str:
    """The first ``# heading``, or a first line underlined with ``===``/``***``/``---``; else ''."""
    underlined = re.match(r"\s*([^\n]+)\n([=*\-~^])\2{2,}[ \t]*(\n|$)", text[:20_000])
    if underlined:
        return underlined.group(1).strip()
    match = re.search(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", text[:20_000], re.MULTILINE)
    return match.group(1).strip() if match else ""


def _html(raw: str) -> tuple[str, str]:
    """(title, text): headings as ``#`` lines, block elements as paragraphs, scripts and styles dropped."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(raw, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(HTML_SKIP):
        tag.decompose()
    parts: list[str] = []
    for tag in soup.find_all(["h1", "h2", "h3", "h4", "h5", "h6", *HTML_BLOCKS]):
        if tag.find_parent(HTML_BLOCKS):
            continue  # nested inside a block already taken whole
        if tag.name == "pre":
            body = tag.get_text().strip("\n")
            if body.strip():
                parts.append("```\n" + body.replace("```", "'''") + "\n```")
            continue
        body = " ".join(tag.get_text(" ", strip=True).split())
        if not body:
            continue
        if tag.name[0] == "h" and tag.name[1:].isdigit():
            parts.append("#" * int(tag.name[1]) + " " + body)
        else:
            parts.append(("- " if tag.name == "li" else "") + body)
    if not parts:  # no block markup at all: the visible text
        parts = [" ".join(line.split()) for line in soup.get_text("\n").split("\n") if line.strip()]
    h1 = soup.find("h1")
    return title or (h1.get_text(" ", strip=True) if h1 else ""), "\n\n".join(parts)


def _pdf(name: str, data: bytes, limits: Limits) -> tuple[str, str]:
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise KnowledgeInputError([f"{name}: the PDF is encrypted; upload an unlocked copy"])
        if len(reader.pages) > limits.pdf_pages:
            raise KnowledgeInputError([f"{name}: {len(reader.pages)} pages is over the limit of {limits.pdf_pages}"])
        pages, total = [], 0
        for number, page in enumerate(reader.pages, 1):
            text = (page.extract_text() or "").replace("\x00", "").strip()
            total += len(text)
            if total > limits.document_chars:
                raise KnowledgeInputError([f"{name}, page {number}: the text passes the limit of "
                                           f"{limits.document_chars:,} characters"])
            if text:
                pages.append(text)
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except KnowledgeInputError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise KnowledgeInputError([f"{name}: not a readable PDF ({type(exc).__name__}: {str(exc)[:200]})"]) from None
    return str(meta_title).strip(), "\n\n".join(pages)


def _jsonl(name: str, data: bytes, limits: Limits) -> list[ParsedDocument]:
    """One document per line ``{"title", "text", "url"?}``; its source is the url, else the title."""
    problems: list[str] = []
    documents: list[ParsedDocument] = []
    seen: dict[str, int] = {}
    lines = data.split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{name}, line {number}"
        if len(line) > limits.line_bytes:
            problems.append(f"{where}: the line is over {limits.line_bytes:,} bytes")
            continue
        if len(documents) + len(problems) >= limits.records:
            problems.append(f"{where}: more than {limits.records:,} records in one file")
            break
        try:
            record = json.loads(line.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError) as exc:
            problems.append(f"{where}: not a JSON object ({str(exc)[:100]})")
            continue
        if not isinstance(record, dict):
            problems.append(f"{where}: not a JSON object")
            continue
        fields = {}
        for key, bound in (("title", limits.title_chars), ("text", limits.document_chars), ("url", limits.url_chars)):
            value = record.get(key, "")
            if not isinstance(value, str):
                problems.append(f"{where}: field '{key}' must be a string")
            elif key != "url" and not value.strip():
                problems.append(f"{where}: field '{key}' is missing or empty")
            elif len(value) > bound:
                problems.append(f"{where}: field '{key}' is over {bound:,} characters")
            fields[key] = value.strip() if isinstance(value, str) else ""
        url = fields["url"]
        if url and not re.match(r"^https?://", url, re.IGNORECASE):
            problems.append(f"{where}: field 'url' must start with http:// or https://")
        source = (url or fields["title"])[: limits.source_chars]
        if source in seen:
            problems.append(f"{where}: the same {'url' if url else 'title'} as line {seen[source]}")
        seen[source] = number
        if not problems:
            documents.append(ParsedDocument(
                source=source, title=fields["title"], url=url, content_type="jsonl",
                text=fields["text"].replace("\x00", ""), sha256=hashlib.sha256(line).hexdigest(),
                size_bytes=len(line)))
    if not documents and not problems:
        problems.append(f"{name}: the file holds no records")
    if problems:
        raise KnowledgeInputError(problems)
    return documents
