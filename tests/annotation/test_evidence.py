"""Evidence on the labeling pages: imported passages, shown numbered and escaped, and the
"not supported by the evidence" flag a labeler sets and a reviewer sees."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.errors import AnnotationError
from annotation.evidence import (
    MAX_PASSAGES,
    EvidenceError,
    cited_numbers,
    evidence_clean,
    messages_with_evidence,
)
from annotation.models import Assignment, Demonstration, Prompt, Ranking
from annotation.queue import ranking_submit, task_next
from annotation.services import completions_add, prompt_create

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}
EVIDENCE = [
    {"title": "Boiling eggs", "section": "Timing", "text": "A soft egg boils for six minutes.",
     "url": "https://example.org/eggs"},
    "Hard eggs take ten minutes.",
]


def url(project, tail: str = "") -> str:
    return f"/projects/{project.slug}/{tail}"


@pytest.fixture
def as_user(client):
    def login(user):
        client.force_login(user)
        return client

    return login


def with_evidence(project, text="How long does an egg boil?", evidence=EVIDENCE, answers=None):
    prompt = prompt_create(project=project, record={"text": text, "evidence": evidence})
    if answers:
        completions_add(prompt=prompt, texts=answers)
    return prompt


def test_imported_evidence_is_numbered_and_bad_evidence_names_line_and_passage(as_user, project, alice):
    c = as_user(alice)
    lines = [json.dumps({"prompt": "eggs?", "evidence": EVIDENCE}),
             json.dumps({"prompt": "bad", "evidence": [{"title": "no text"}]}),
             json.dumps({"prompt": "many", "evidence": ["x"] * (MAX_PASSAGES + 1)})]
    upload = SimpleUploadedFile("ev.jsonl", "\n".join(lines).encode())
    body = c.post(url(project, "import/upload/"), {"file": upload}, **HTMX).content.decode()
    assert "Nothing was imported" in body
    assert "line 2, field &#x27;evidence&#x27;: passage 1&#x27;s text must be non-empty text" in body
    assert f"at most {MAX_PASSAGES}" in body
    assert not Prompt.objects.exists()

    upload = SimpleUploadedFile("ev.jsonl", lines[0].encode())
    c.post(url(project, "import/upload/"), {"file": upload}, **HTMX)
    prompt = Prompt.objects.get()
    assert [(p["n"], p["title"], p["text"]) for p in prompt.evidence] == [
        (1, "Boiling eggs", "A soft egg boils for six minutes."), (2, "", "Hard eggs take ten minutes.")]


def test_the_model_reads_the_passages_in_one_system_message_however_often_it_is_applied():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Eggs?"}]
    once = messages_with_evidence(messages, evidence_clean(EVIDENCE))
    assert once[0]["role"] == "system" and once[0]["content"].startswith("Be brief.")
    assert "[1] Boiling eggs — Timing\nA soft egg boils for six minutes." in once[0]["content"]
    assert "[2]\nHard eggs take ten minutes." in once[0]["content"]
    assert messages_with_evidence(once, evidence_clean(EVIDENCE)) == once
    assert messages_with_evidence(messages, []) == messages
    assert cited_numbers("Six minutes [1], see also [3] and [1].", available=[1, 2]) == [1]
    with pytest.raises(EvidenceError, match="passage 1's url is longer"):
        evidence_clean([{"text": "x", "url": "h" * 3000}])


def test_ranking_page_lists_the_passages_escaped_and_offers_the_not_supported_flag(as_user, project, bob):
    evil = [{"title": "<b>T</b>", "text": "<script>alert('p')</script> six minutes", "url": "javascript:alert(1)"},
            {"title": "Safe", "text": "ten minutes", "url": "https://example.org/eggs"}]
    with_evidence(project, evidence=evil, answers=["Six minutes [1].", "Ten.", "Three.", "Nine [2]."])
    body = as_user(bob).get(url(project, "rank/")).content.decode()
    assert "&lt;script&gt;alert(&#x27;p&#x27;)&lt;/script&gt; six minutes" in body
    assert "<script>alert" not in body and "javascript:alert" not in body and "&lt;b&gt;T&lt;/b&gt;" in body
    assert 'href="https://example.org/eggs"' in body
    assert 'data-passage="1"' in body and 'data-passage="2"' in body
    assert body.count('value="not_supported"') == 4 and "Not supported by the evidence" in body
    assert "Cites [1]" in body and "Cites [2]" in body and "Cites no passage" in body


def test_without_evidence_there_is_no_passage_list_and_no_not_supported_flag(as_user, project, bob, alice):
    prompt = prompt_create(project=project, record={"text": "Plain question"})
    completions = completions_add(prompt=prompt, texts=["a", "b", "c", "d"])
    body = as_user(bob).get(url(project, "rank/")).content.decode()
    assert "data-evidence" not in body and 'value="not_supported"' not in body
    assignment = task_next(project=project, user=bob, kind="ranking")
    with pytest.raises(AnnotationError, match="no evidence passages"):
        ranking_submit(assignment=assignment, user=bob, order=[[c.pk] for c in completions],
                       flags={str(completions[0].pk): ["not_supported"]})


def test_a_labelers_not_supported_flag_is_kept_and_the_reviewer_sees_it_with_the_passages(
        as_user, project, bob, dave):
    project.review_rate = 1.0
    project.save()
    prompt = with_evidence(project, answers=["Six minutes [1].", "Twenty minutes.", "Ten [2].", "Unsure."])
    c = as_user(bob)
    c.get(url(project, "rank/"))
    a = Assignment.objects.get(user=bob, kind="ranking")
    one, two, three, four = prompt.completions.order_by("id").values_list("id", flat=True)
    response = c.post(url(project, f"tasks/{a.pk}/ranking/"), {
        "order": json.dumps([[one], [three], [four], [two]]), f"flag-{two}": ["not_supported"]}, **HTMX)
    assert "Ranking saved" in response.content.decode()
    assert Ranking.objects.get().flags == {str(two): ["not_supported"]}

    body = as_user(dave).get(url(project, "review/?kind=ranking")).content.decode()
    assert "Not supported by the evidence" in body
    assert "A soft egg boils for six minutes." in body and "Hard eggs take ten minutes." in body


def test_a_demonstration_cites_passages_and_the_reviewer_sees_which(as_user, project, bob, dave):
    project.review_rate = 1.0
    project.save()
    with_evidence(project)
    c = as_user(bob)
    page = c.get(url(project, "write/")).content.decode()
    assert "A soft egg boils for six minutes." in page and "cite a passage by its number" in page
    a = Assignment.objects.get(user=bob, kind="demonstration")
    c.post(url(project, f"tasks/{a.pk}/demonstration/"), {"content": "Ten minutes for a hard egg [2]."}, **HTMX)
    assert Demonstration.objects.get().content == "Ten minutes for a hard egg [2]."
    body = as_user(dave).get(url(project, "review/")).content.decode()
    assert "cites [2]" in body
    cited = body.split('data-passage="2"')[0].rsplit("<li", 1)[1]
    assert "cited" in cited and "cited" not in body.split('data-passage="1"')[0].rsplit("<li", 1)[1]
