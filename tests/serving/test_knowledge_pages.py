"""Knowledge-base pages and REST API: managers write, members read, outsiders see nothing; a bad
upload stores nothing and says why; text from documents is escaped."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from serving.knowledge import retrieval
from serving.models import KnowledgeBase, KnowledgeChunk, KnowledgeDocument
from tests.serving.knowledge_helpers import make_knowledge_base

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_indexes():
    retrieval.forget()


def _login(client, user):
    client.force_login(user)
    return client


def test_a_manager_creates_a_base_and_uploads_files_that_wait_for_indexing(client, project, alice, monkeypatch,
                                                                        django_capture_on_commit_callbacks):
    _login(client, alice)
    response = client.post(reverse("serving:knowledge_bases", args=[project.slug]), {"name": "Handbook"})
    base = KnowledgeBase.objects.get(project=project, name="Handbook")
    assert response.url == reverse("serving:knowledge_base", args=[project.slug, base.pk])

    sent = []
    from serving import tasks

    monkeypatch.setattr(tasks.knowledge_base_index_task, "delay", sent.append)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(response.url, {"files": [SimpleUploadedFile("leave.md", b"# Leave\n\nTwo weeks ahead."),
                                             SimpleUploadedFile("faq.txt", b"Plain answers.")]})
    assert sent == [base.pk]
    base.refresh_from_db()
    assert base.index_state == "indexing"
    assert sorted(base.documents.values_list("title", flat=True)) == ["Leave", "faq"]
    page = client.get(response.url).content.decode()
    assert 'data-index-state="indexing"' in page and "0 of 2 passages embedded" in page


def test_a_bad_file_stores_nothing_and_names_the_problem(client, project, alice):
    base = make_knowledge_base(project, {"Leave": "Two weeks ahead."})
    before = KnowledgeChunk.objects.count()
    _login(client, alice)
    response = client.post(reverse("serving:knowledge_base", args=[project.slug, base.pk]), {"files": [
        SimpleUploadedFile("good.md", b"# Good\n\nFine."),
        SimpleUploadedFile("bad.jsonl", b'{"title": "x", "text": "y"}\n{"title": 5}\n')]}, follow=True)

    page = response.content.decode()
    assert "Nothing was stored" in page and "bad.jsonl, line 2: field &#x27;title&#x27; must be a string" in page
    assert KnowledgeChunk.objects.count() == before
    assert not KnowledgeDocument.objects.filter(source="good.md").exists()
    base.refresh_from_db()
    assert base.index_state == "ready"


def test_the_document_page_escapes_text_and_anchors_each_passage(client, project, bob):
    base = make_knowledge_base(project, {"Tricky <b>title</b>": "<script>alert('x')</script> and <img src=x onerror=y>"})
    document = base.documents.get()
    chunk = document.chunks.get()
    page = client.get(reverse("serving:knowledge_document", args=[project.slug, base.pk, document.pk]))
    assert page.status_code == 302  # signed out
    page = _login(client, bob).get(reverse("serving:knowledge_document", args=[project.slug, base.pk, document.pk]))
    html = page.content.decode()
    assert f'id="chunk-{chunk.pk}"' in html
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "Tricky &lt;b&gt;title&lt;/b&gt;" in html


def test_labelers_read_but_cannot_change_and_outsiders_get_404(client, project, bob, eve):
    base = make_knowledge_base(project, {"Leave": "Two weeks ahead."})
    document = base.documents.get()
    _login(client, bob)
    assert client.get(reverse("serving:knowledge_bases", args=[project.slug])).status_code == 200
    assert client.post(reverse("serving:knowledge_bases", args=[project.slug]), {"name": "Mine"}).status_code == 404
    assert client.post(reverse("serving:knowledge_document_delete",
                               args=[project.slug, base.pk, document.pk])).status_code == 404
    assert client.post(reverse("serving:knowledge_base", args=[project.slug, base.pk]),
                       {"files": [SimpleUploadedFile("x.md", b"# X\n\nY")]}).status_code == 404
    api = reverse("serving:api-knowledge-document", args=[project.slug, base.pk, document.pk])
    assert client.get(api).status_code == 200
    assert client.delete(api).status_code == 403
    assert KnowledgeDocument.objects.filter(pk=document.pk).exists()

    _login(client, eve)
    assert client.get(reverse("serving:knowledge_document", args=[project.slug, base.pk, document.pk])).status_code == 404
    assert client.get(reverse("serving:api-knowledge-bases", args=[project.slug])).status_code == 404


def test_the_api_lists_searches_uploads_and_deletes(client, project, alice):
    base = make_knowledge_base(project, {"Leave": "Ask your lead two weeks ahead.", "Pay": "Salaries arrive on the 25th."})
    _login(client, alice)
    listed = client.get(reverse("serving:api-knowledge-bases", args=[project.slug])).json()
    assert [(b["name"], b["document_count"], b["index_state"]) for b in listed["results"]] == [("Handbook", 2, "ready")]

    found = client.get(reverse("serving:api-knowledge-search", args=[project.slug, base.pk]),
                       {"q": "When is payday?", "k": 1}).json()
    assert [p["title"] for p in found] == ["Pay"]

    bad = client.post(reverse("serving:api-knowledge-documents", args=[project.slug, base.pk]),
                      {"files": [SimpleUploadedFile("x.exe", b"MZ")]})
    assert bad.status_code == 400 and bad.json()["problems"] == [
        "x.exe: unsupported file type; upload .md, .txt, .html, .pdf or .jsonl"]
    made = client.post(reverse("serving:api-knowledge-documents", args=[project.slug, base.pk]),
                       {"files": [SimpleUploadedFile("travel.md", b"# Travel\n\nBook trains.")]})
    assert made.status_code == 201 and made.json()[0]["title"] == "Travel"

    pay = base.documents.get(title="Pay")
    gone = client.delete(reverse("serving:api-knowledge-document", args=[project.slug, base.pk, pay.pk]))
    assert gone.status_code == 204
    found = client.get(reverse("serving:api-knowledge-search", args=[project.slug, base.pk]),
                       {"q": "When is payday?"}).json()
    assert all(p["title"] != "Pay" for p in found)
