"""Cut a document's text into passages by its structure: headings, then paragraphs, then sentences.

The text is the parsed form every format is turned into (``parsing.py``): Markdown-like, with ATX
headings (``## Install``) or underlined ones (``Install`` over a line of ``=``, ``-``, ``*``, ``~``;
their levels go by first appearance, as reStructuredText has it). A chunk is a contiguous span of
that text, so ``char_start`` points a reader at it; it never ends on a heading (a heading stays
with the text under it), never crosses into another section, and holds at most ``max_tokens``
tokens. A section longer than that is cut at paragraph boundaries (a paragraph longer still, at
sentence or word boundaries), and each later chunk repeats about ``overlap_tokens`` of the one
before, so a fact near a cut is whole in one of them. Fenced code blocks are never read for headings.

Tokens here are words and punctuation marks (``\\w+|[^\\w\\s]``): cheap, no tokenizer needed, and
within a third of the sentence encoder's word pieces for English prose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TOKEN = re.compile(r"\w+|[^\w\s]")
ATX = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
UNDERLINE = re.compile(r"^([=\-*~^])\1{2,}[ \t]*$")
FENCE = re.compile(r"^(```|~~~)")
SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+")


@dataclass(frozen=True)
class ChunkConfig:
    max_tokens: int = 256
    overlap_tokens: int = 40
    max_section_depth: int = 4  # headings deeper than this still cut, but the path shows 4 levels
    max_chunks: int = 20_000  # per document: past this the document is refused (parsing names it)


@dataclass(frozen=True)
class Chunk:
    position: int
    section: str
    text: str
    token_count: int
    char_start: int


@dataclass
class _Block:
    start: int
    end: int
    heading: tuple[int, str] | None = None  # (level, title) for a heading line


def count_tokens(text: str) -> int:
    return len(TOKEN.findall(text))


def chunk_text(text: str, config: ChunkConfig | None = None) -> list[Chunk]:
    """The passages of ``text`` in order, each with its heading path (``"Install > Linux"``)."""
    config = config or ChunkConfig()
    chunks: list[Chunk] = []
    for section, blocks in _sections(_blocks(text), config):
        for start, end in _spans(text, blocks, config):
            piece = text[start:end]
            chunks.append(Chunk(position=len(chunks), section=section[:500], text=piece,
                                token_count=count_tokens(piece), char_start=start))
    return chunks


def _lines(text: str):
    """(start, end, line) for each line, ``end`` excluding the newline."""
    pos = 0
    for line in text.split("\n"):
        yield pos, pos + len(line), line
        pos += len(line) + 1


def _blocks(text: str) -> list[_Block]:
    """Paragraphs (runs of non-blank lines, a fenced code block whole) and heading lines, with spans."""
    blocks: list[_Block] = []
    levels: dict[str, int] = {}  # underline character -> level, by first appearance
    current: _Block | None = None
    in_fence = False

    def close() -> None:
        nonlocal current
        if current is not None:
            blocks.append(current)
            current = None

    for start, end, line in _lines(text):
        fence = FENCE.match(line)
        if in_fence or fence:
            in_fence = in_fence != bool(fence)
            if current is None:
                current = _Block(start, end)
            current.end = end
            continue
        atx = ATX.match(line)
        if atx:
            close()
            blocks.append(_Block(start, end, (len(atx.group(1)), atx.group(2).strip())))
            continue
        under = UNDERLINE.match(line)
        if under and current is not None and "\n" not in text[current.start:current.end]:
            # The one-line paragraph above is the heading this line underlines.
            level = levels.setdefault(under.group(1), len(levels) + 1)
            current.heading = (level, text[current.start:current.end].strip())
            current.end = end
            close()
            continue
        if not line.strip():
            close()
        elif current is None:
            current = _Block(start, end)
        else:
            current.end = end
    close()
    return blocks


def _sections(blocks: list[_Block], config: ChunkConfig):
    """(heading path, blocks) per section; a heading with nothing under it joins the next section."""
    path: list[tuple[int, str]] = []
    pending: list[_Block] = []
    for block in blocks:
        if block.heading is not None:
            has_text = any(b.heading is None for b in pending)
            if has_text:
                yield _path(path, config), pending
                pending = []
            level, title = block.heading
            path = [p for p in path if p[0] < level] + [(level, title)]
        pending.append(block)
    if pending:
        yield _path(path, config), pending


def _path(path: list[tuple[int, str]], config: ChunkConfig) -> str:
    return " > ".join(title for _, title in path[-config.max_section_depth:])


def _spans(text: str, blocks: list[_Block], config: ChunkConfig) -> list[tuple[int, int]]:
    """Cut one section's blocks into (start, end) spans of at most ``max_tokens`` tokens."""
    units: list[tuple[int, int, int]] = []  # (start, end, tokens): blocks, or the pieces of a long one
    for block in blocks:
        tokens = count_tokens(text[block.start:block.end])
        if tokens <= config.max_tokens:
            units.append((block.start, block.end, tokens))
        else:
            units.extend(_split_long(text, block.start, block.end, config))
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(units):
        start, end, total = units[i][0], units[i][1], units[i][2]
        j = i + 1
        while j < len(units) and total + units[j][2] <= config.max_tokens:
            end, total = units[j][1], total + units[j][2]
            j += 1
        spans.append((start, end))
        if j >= len(units):
            break
        # Overlap: start the next span at the last units of this one that fit in overlap_tokens.
        back, carried = j, 0
        while back - 1 > i and carried + units[back - 1][2] <= config.overlap_tokens \
                and units[back - 1][2] + units[j][2] + carried <= config.max_tokens:
            back -= 1
            carried += units[back][2]
        i = back
    return spans


def _split_long(text: str, start: int, end: int, config: ChunkConfig) -> list[tuple[int, int, int]]:
    """A paragraph longer than a chunk, as runs of sentences (or of words, for a very long sentence) of
    about ``overlap_tokens`` each: small enough that the packing can repeat one across a cut."""
    sentences: list[tuple[int, int]] = []
    pos = start
    for match in SENTENCE_END.finditer(text, start, end):
        sentences.append((pos, match.start()))
        pos = match.end()
    sentences.append((pos, end))
    pieces: list[tuple[int, int]] = []
    for s, e in sentences:
        if count_tokens(text[s:e]) <= config.overlap_tokens:
            pieces.append((s, e))
        else:
            step = max(1, config.overlap_tokens // 2 - 1)
            pieces.extend((s + m.start(), s + m.end())
                          for m in re.finditer(r"\S+(?:\s+\S+){0," + str(step) + "}", text[s:e]))
    out: list[tuple[int, int, int]] = []
    for s, e in pieces:
        n = count_tokens(text[s:e])
        if out and out[-1][2] + n <= config.overlap_tokens:
            out[-1] = (out[-1][0], e, out[-1][2] + n)
        else:
            out.append((s, e, n))
    return out
