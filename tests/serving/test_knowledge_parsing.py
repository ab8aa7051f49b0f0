"""Reading uploads into documents and cutting them into passages (no database, no model)."""

from __future__ import annotations

import itertools
import json

import pytest

from serving.knowledge.chunking import ChunkConfig, chunk_text, count_tokens
from serving.knowledge.parsing import KnowledgeInputError, Limits, parse_file


def test_each_passage_keeps_its_heading_with_its_text():
    text = ("# Install\n\nRead this first.\n\n## Linux\n\n### Debian\n\nRun apt install tuneloop.\n\n"
            "## Windows\n\nRun the installer.\n")
    chunks = chunk_text(text)

    assert [c.section for c in chunks] == ["Install", "Install > Linux > Debian", "Install > Windows"]
    debian = chunks[1]
    assert debian.text.startswith("## Linux\n\n### Debian") and debian.text.endswith("apt install tuneloop.")
    assert not any(c.text.strip().startswith("#") and "\n" not in c.text.strip() for c in chunks)  # no bare heading
    for c in chunks:
        assert text[c.char_start:c.char_start + len(c.text)] == c.text
    assert [c.position for c in chunks] == [0, 1, 2]


def test_underlined_headings_count_like_hash_headings_and_code_fences_hide_hashes():
    text = "Guide\n=====\n\nIntro.\n\nSetup\n-----\n\n```\n# not a heading\n```\n\nDone.\n"
    chunks = chunk_text(text)
    assert [c.section for c in chunks] == ["Guide", "Guide > Setup"]
    assert "# not a heading" in chunks[1].text


def test_a_long_section_is_cut_under_the_limit_with_overlap_and_keeps_its_section():
    sentences = " ".join(f"Sentence number {i} says something about topic {i}." for i in range(200))
    text = f"# Long\n\n{sentences}\n"
    config = ChunkConfig(max_tokens=120, overlap_tokens=30)
    chunks = chunk_text(text, config)

    assert len(chunks) > 5
    assert all(c.section == "Long" for c in chunks)
    assert all(c.token_count <= 120 for c in chunks)
    for a, b in itertools.pairwise(chunks):
        assert b.char_start < a.char_start + len(a.text)  # the next passage repeats the end of this one
    assert "Sentence number 199" in chunks[-1].text
    assert count_tokens(chunks[0].text) == chunks[0].token_count


def test_html_headings_and_paragraphs_survive_and_scripts_do_not():
    html = (b"<html><head><title>Team handbook</title><script>alert(1)</script></head><body>"
            b"<h1>Leave</h1><p>Ask your lead <b>two weeks</b> ahead.</p><ul><li>Sick days</li></ul>"
            b"<h2>Parental</h2><p>Sixteen weeks.</p><style>p{}</style></body></html>")
    [doc] = parse_file("handbook.html", html)
    assert doc.title == "Team handbook" and doc.content_type == "html"
    assert "alert" not in doc.text and "p{}" not in doc.text
    chunks = chunk_text(doc.text)
    assert [c.section for c in chunks] == ["Leave", "Leave > Parental"]
    assert "Ask your lead two weeks ahead." in chunks[0].text and "- Sick days" in chunks[0].text


def _pdf(lines: list[str]) -> bytes:
    """A one-page PDF showing ``lines`` in Helvetica, written by hand (pypdf reads, it does not typeset)."""
    body = "BT /F1 12 Tf 20 180 Td " + " ".join(f"({line}) Tj 0 -16 Td" for line in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(body)} >>\nstream\n{body}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = "%PDF-1.4\n", []
    for number, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{obj}\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n" + "".join(f"{o:010d} 00000 n \n" for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    return out.encode()


def test_pdf_pages_become_text_and_an_unreadable_pdf_is_named():
    [doc] = parse_file("policy.pdf", _pdf(["Expense policy", "Receipts are due within ten days."]))
    assert doc.content_type == "pdf" and doc.title == "policy"
    assert "Receipts are due within ten days." in doc.text
    with pytest.raises(KnowledgeInputError, match=r"broken\.pdf: not a readable PDF"):
        parse_file("broken.pdf", b"%PDF-1.4 this is not a pdf")


def test_jsonl_records_are_documents_and_every_bad_line_is_named():
    good = "\n".join(json.dumps(r) for r in [
        {"title": "A", "text": "Alpha.", "url": "https://example.org/a"}, {"title": "B", "text": "Beta."}])
    docs = parse_file("kb.jsonl", good.encode())
    assert [(d.source, d.title, d.url) for d in docs] == [("https://example.org/a", "A", "https://example.org/a"),
                                                          ("B", "B", "")]
    bad = "\n".join([json.dumps({"title": "A", "text": "x"}), "{nope", json.dumps({"title": "", "text": "y"}),
                     json.dumps({"title": "C", "text": 3}), json.dumps({"title": "D", "text": "d", "url": "javascript:x"}),
                     json.dumps({"title": "A", "text": "again"})])
    with pytest.raises(KnowledgeInputError) as caught:
        parse_file("kb.jsonl", bad.encode())
    problems = caught.value.problems
    assert problems == [
        "kb.jsonl, line 2: not a JSON object (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))",
        "kb.jsonl, line 3: field 'title' is missing or empty",
        "kb.jsonl, line 4: field 'text' must be a string",
        "kb.jsonl, line 5: field 'url' must start with http:// or https://",
        "kb.jsonl, line 6: the same title as line 1",
    ]


def test_limits_and_types_are_refused_with_the_file_named():
    with pytest.raises(KnowledgeInputError, match=r"notes.docx: unsupported file type"):
        parse_file("notes.docx", b"x")
    with pytest.raises(KnowledgeInputError, match=r"big.md: 2,000 bytes is over the limit of 1,000"):
        parse_file("big.md", b"a" * 2000, limits=Limits(file_bytes=1000))
    with pytest.raises(KnowledgeInputError, match=r"latin.txt, line 2: not UTF-8"):
        parse_file("latin.txt", b"ok\ncaf\xe9")
    with pytest.raises(KnowledgeInputError, match=r"many.jsonl, line 3: more than 2 records"):
        parse_file("many.jsonl", b'{"title":"a","text":"a"}\n{"title":"b","text":"b"}\n{"title":"c","text":"c"}\n',
                   limits=Limits(records=2))
