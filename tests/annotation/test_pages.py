"""The labeling pages as a labeler, a reviewer and a manager use them (Django test client)."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.markdown import render_markdown
from annotation.models import Assignment, Demonstration, Membership, Prompt, Ranking, ReviewState
from annotation.services import completions_add, prompt_create
from annotation.views import shown_completions

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


def url(project, tail: str = "") -> str:
    return f"/projects/{project.slug}/{tail}"


@pytest.fixture
def prompts(project):
    return [prompt_create(project=project, record={"text": text}) for text in (
        "How do I boil an egg?", "Name three rivers in Europe.", "What is a prime number?",
    )]


@pytest.fixture
def ranking_prompt(project):
    prompt = prompt_create(project=project, record={"text": "Which answer is best?"})
    completions_add(prompt=prompt, texts=["Answer one", "Answer two", "Answer three", "Answer four"])
    return prompt


def lease(client, project, kind: str) -> Assignment:
    """Open the task page, as the labeler does, and return the task it handed out."""
    page = "write/" if kind == "demonstration" else "rank/"
    assert client.get(url(project, page)).status_code == 200
    return Assignment.objects.get(user=client.user, kind=kind, status=Assignment.Status.LEASED)


@pytest.fixture
def as_user(client):
    def login(user):
        client.force_login(user)
        client.user = user
        return client

    return login


def test_every_member_sees_the_project_pages(as_user, project, alice, bob, dave, prompts):
    for user in (alice, bob, dave):
        c = as_user(user)
        overview = c.get(url(project))
        assert overview.status_code == 200
        assert "Assistant" in overview.content.decode()
        assert c.get(url(project, "write/")).status_code == 200
        assert c.get(url(project, "rank/")).status_code == 200
        assert c.get(url(project, "label/demonstration/")).status_code == 200  # the project nav's link
    assert as_user(dave).get(url(project, "review/")).status_code == 200
    assert as_user(alice).get(url(project, "review/?kind=ranking")).status_code == 200


def test_member_of_another_project_gets_404_everywhere(as_user, project, other_project, eve, bob, prompts):
    a = lease(as_user(bob), project, "demonstration")
    c = as_user(eve)
    for tail in ("", "write/", "rank/", "review/", "settings/", "members/", "import/"):
        assert c.get(url(project, tail)).status_code == 404, tail
    for tail in (f"tasks/{a.pk}/demonstration/", f"tasks/{a.pk}/skip/", f"tasks/{a.pk}/flag/", "prompts/new/",
                 "import/upload/", "members/"):
        assert c.post(url(project, tail), {"content": "x", "text": "x", "username": "eve"}).status_code == 404, tail
    # eve's own project works, and bob's task id does not leak into it
    assert c.get(url(other_project)).status_code == 200
    assert c.post(url(other_project, f"tasks/{a.pk}/demonstration/"), {"content": "x"}).status_code == 404
    assert not Demonstration.objects.exists()


def test_labeler_cannot_open_manager_or_review_pages(as_user, project, bob, alice):
    c = as_user(bob)
    for tail in ("settings/", "members/", "import/", "review/"):
        assert c.get(url(project, tail)).status_code == 404, tail
    assert c.post(url(project, "members/"), {"username": "bob", "role": "manager"}).status_code == 404
    assert Membership.objects.get(project=project, user=bob).role == "labeler"
    m = as_user(alice)
    for tail in ("settings/", "members/", "import/", "review/"):
        assert m.get(url(project, tail)).status_code == 200, tail


def test_labeler_submits_an_answer_and_gets_the_next_prompt_in_place(as_user, project, bob, prompts):
    c = as_user(bob)
    page = c.get(url(project, "write/")).content.decode()
    assert "How do I boil an egg?" in page and "Guidelines" in page
    first = Assignment.objects.get(user=bob, status=Assignment.Status.LEASED)
    response = c.post(url(project, f"tasks/{first.pk}/demonstration/"),
                      {"content": "Put it in boiling water for 8 minutes.", "time_spent_ms": "4200"}, **HTMX)
    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body  # a fragment for htmx, not a page
    assert "Answer saved" in body and "Name three rivers in Europe." in body
    demo = Demonstration.objects.get()
    assert demo.author == bob and demo.content == "Put it in boiling water for 8 minutes."
    assert demo.time_spent_ms == 4200


def test_an_answer_posted_twice_is_stored_once(as_user, project, bob, prompts):
    c = as_user(bob)
    a = lease(c, project, "demonstration")
    for _ in range(2):
        response = c.post(url(project, f"tasks/{a.pk}/demonstration/"), {"content": "Eight minutes."}, **HTMX)
        assert response.status_code == 200
    assert Demonstration.objects.filter(assignment=a).count() == 1
    assert Demonstration.objects.count() == 1


def test_empty_answer_is_refused_with_a_message(as_user, project, bob, prompts):
    c = as_user(bob)
    a = lease(c, project, "demonstration")
    body = c.post(url(project, f"tasks/{a.pk}/demonstration/"), {"content": "   "}, **HTMX).content.decode()
    assert "Write an answer first." in body and "How do I boil an egg?" in body
    assert not Demonstration.objects.exists()


def test_labeler_ranks_with_ties_and_flags(as_user, project, bob, ranking_prompt):
    c = as_user(bob)
    page = c.get(url(project, "rank/")).content.decode()
    for text in ("Answer one", "Answer two", "Answer three", "Answer four"):
        assert text in page
    assert "Reads as" in page
    a = Assignment.objects.get(user=bob, kind="ranking")
    one, two, three, four = ranking_prompt.completions.order_by("id").values_list("id", flat=True)
    order = [[two], [one, three], [four]]
    response = c.post(url(project, f"tasks/{a.pk}/ranking/"), {
        "order": json.dumps(order), f"flag-{four}": ["unsafe", "factually_wrong"], "comment": "four is rude",
        "time_spent_ms": "9000",
    }, **HTMX)
    assert response.status_code == 200
    assert "Ranking saved" in response.content.decode()
    ranking = Ranking.objects.get()
    assert ranking.order == order
    assert ranking.flags == {str(four): ["unsafe", "factually_wrong"]}
    assert ranking.comment == "four is rude" and ranking.author == bob


def test_incomplete_ranking_is_refused(as_user, project, bob, ranking_prompt):
    c = as_user(bob)
    a = lease(c, project, "ranking")
    one, two, three, _ = ranking_prompt.completions.order_by("id").values_list("id", flat=True)
    body = c.post(url(project, f"tasks/{a.pk}/ranking/"), {"order": json.dumps([[one], [two, three]])},
                  **HTMX).content.decode()
    assert "Place every answer in a tier first (1 left)." in body
    assert not Ranking.objects.exists()


def test_skip_and_flag_move_on(as_user, project, alice, bob, prompts):
    c = as_user(bob)
    a = lease(c, project, "demonstration")
    body = c.post(url(project, f"tasks/{a.pk}/skip/"), {"reason": "unclear"}, **HTMX).content.decode()
    assert "Skipped." in body and "Name three rivers in Europe." in body
    a.refresh_from_db()
    assert a.status == Assignment.Status.SKIPPED and "unclear" in a.skip_reason
    b = Assignment.objects.get(user=bob, status=Assignment.Status.LEASED)
    c.post(url(project, f"tasks/{b.pk}/flag/"), {"reason": "Contains personal data"}, **HTMX)
    assert Prompt.objects.get(pk=b.prompt_id).flag_count == 1
    overview = as_user(alice).get(url(project)).content.decode()  # the manager sees the flag
    assert "Flagged by labelers" in overview and "Contains personal data (bob)" in overview


def test_labeler_writes_a_new_prompt(as_user, project, bob):
    c = as_user(bob)
    body = c.post(url(project, "prompts/new/"), {"text": "Explain photosynthesis simply."}, **HTMX).content.decode()
    assert "joined the queue" in body
    prompt = Prompt.objects.get(project=project)
    assert prompt.text == "Explain photosynthesis simply." and prompt.source == "labeler"


def test_reviewer_approves_edits_and_rejects(as_user, project, bob, dave, prompts):
    project.review_rate = 1.0
    project.save()
    c = as_user(bob)
    for answer in ("First answer", "Second answer", "Third answer"):
        a = Assignment.objects.filter(user=bob, status="leased").first() or lease(c, project, "demonstration")
        c.post(url(project, f"tasks/{a.pk}/demonstration/"), {"content": answer}, **HTMX)
    first, second, third = Demonstration.objects.order_by("id")
    r = as_user(dave)
    assert "First answer" in r.get(url(project, "review/")).content.decode()
    body = r.post(url(project, f"review/demonstration/{first.pk}/approve/"), **HTMX).content.decode()
    assert "Approved." in body and "Second answer" in body
    r.post(url(project, f"review/demonstration/{second.pk}/edit/"), {"content": "Second answer, improved"}, **HTMX)
    body = r.post(url(project, f"review/demonstration/{third.pk}/reject/"), {"reason": "Off topic"}, **HTMX)
    assert "went back to the queue" in body.content.decode()
    first.refresh_from_db(), second.refresh_from_db(), third.refresh_from_db()
    assert first.review_state == ReviewState.APPROVED
    assert second.content == "Second answer, improved" and second.original_content == "Second answer"
    assert third.review_state == ReviewState.REJECTED and third.review_comment == "Off topic"
    assert "Nothing to review" in r.get(url(project, "review/")).content.decode()


def test_reviewer_sees_a_ranking_as_tiers_and_pairs(as_user, project, bob, dave, ranking_prompt):
    project.review_rate = 1.0
    project.save()
    c = as_user(bob)
    a = lease(c, project, "ranking")
    one, two, three, four = ranking_prompt.completions.order_by("id").values_list("id", flat=True)
    c.post(url(project, f"tasks/{a.pk}/ranking/"),
           {"order": json.dumps([[three], [one, two], [four]]), f"flag-{four}": "not_helpful"}, **HTMX)
    r = as_user(dave)
    body = r.get(url(project, "review/?kind=ranking")).content.decode()
    assert "Ranking by bob" in body and "Not helpful" in body
    name = {c.pk: "ABCD"[i] for i, c in enumerate(shown_completions(a))}  # the letters bob saw
    expected = [f"{name[x]} &gt; {name[y]}" for x, y in [(three, one), (three, two), (three, four)]]
    expected += [f"{name[one]} = {name[two]}", f"{name[one]} &gt; {name[four]}", f"{name[two]} &gt; {name[four]}"]
    assert "Reads as: " + ", ".join(expected) in body  # the tie bob made reads as he saw it
    keys = body.split("<strong>Keys</strong>")[1].split("</div>")[0]
    assert "reject" in keys and "edit" not in keys  # rankings have no Edit button, so no E key either
    ranking = Ranking.objects.get()
    r.post(url(project, f"review/ranking/{ranking.pk}/reject/"), {"reason": "Random order"}, **HTMX)
    ranking.refresh_from_db()
    assert ranking.review_state == ReviewState.REJECTED
    assert Assignment.objects.get(pk=a.pk).status == Assignment.Status.RETURNED


def test_script_in_prompts_answers_and_completions_is_inert(as_user, project, bob, dave):
    evil = "<script>alert('x')</script> [click](javascript:alert(1))"
    prompt = prompt_create(project=project, record={"text": "Hi " + evil})
    completions_add(prompt=prompt, texts=[evil, "b", "c", "d"])
    project.review_rate = 1.0
    project.save()
    c = as_user(bob)
    for page in ("write/", "rank/"):
        body = c.get(url(project, page)).content.decode()
        assert "<script>alert" not in body and "javascript:alert" not in body.replace("(javascript:alert(1))", "")
        assert "&lt;script&gt;alert" in body
    a = Assignment.objects.get(user=bob, kind="demonstration")
    c.post(url(project, f"tasks/{a.pk}/demonstration/"), {"content": evil}, **HTMX)
    body = as_user(dave).get(url(project, "review/")).content.decode()
    assert "<script>alert" not in body and 'href="javascript:' not in body
    assert "&lt;script&gt;alert" in body


def test_markdown_renders_bold_but_not_scripts_or_javascript_links():
    html = render_markdown("**bold** <script>alert(1)</script> [x](javascript:alert(1)) <img src=x onerror=alert(1)>")
    assert "<strong>bold</strong>" in html
    assert "<script" not in html and "javascript:" not in html and "<img" not in html
    assert render_markdown("[docs](https://example.org)").count('href="https://example.org"') == 1


def test_a_numbered_list_split_by_paragraphs_keeps_its_numbers():
    """Models write "1. …", a paragraph, "2. …": the second list must not restart at 1."""
    html = render_markdown("1. **Eat well**\n\nFruit and vegetables.\n\n2. **Sleep**\n\nEight hours.")
    assert '<ol start="2">' in html


def test_manager_changes_settings_and_invites(as_user, project, alice, eve):
    c = as_user(alice)
    response = c.post(url(project, "settings/"), {
        "name": "Assistant", "guidelines": "Be **kind**.", "completions_per_prompt": 5, "labels_per_item": 2,
        "review_rate": 0.5, "gold_rate": 0.1, "lease_seconds": 900,
    })
    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.completions_per_prompt, project.labels_per_item, project.review_rate) == (5, 2, 0.5)
    assert "<strong>kind</strong>" in c.get(url(project)).content.decode()
    bad = c.post(url(project, "settings/"), {"name": "Assistant", "completions_per_prompt": 12, "labels_per_item": 1,
                                             "review_rate": 2, "gold_rate": 0, "lease_seconds": 900})
    assert bad.status_code == 400 and "K must be between 2 and 9." in bad.content.decode()
    assert c.post(url(project, "members/"), {"username": "eve", "role": "labeler"}).status_code == 302
    assert "waiting for them to accept" in c.get(url(project, "members/")).content.decode()
    assert as_user(eve).get(url(project, "write/")).status_code == 404, "no member before accepting"
    invitation = eve.invitations.get()
    assert f"/invitations/{invitation.pk}/accept/" in as_user(eve).get("/").content.decode()
    assert as_user(eve).post(f"/invitations/{invitation.pk}/accept/").status_code == 302
    assert as_user(eve).get(url(project, "write/")).status_code == 200
    missing = as_user(alice).post(url(project, "members/"), {"username": "nobody", "role": "labeler"})
    assert "No account named" in missing.content.decode()


def test_import_reports_bad_lines_and_imports_nothing(as_user, project, alice):
    c = as_user(alice)
    lines = ['{"prompt": "ok one"}', '{"prompt": "ok two"}', '{"messages": "nope"}', '{"prompt": "ok three"}',
             '{"prompt": "ok four"}', '{"prompt": "ok five"}', "not json"]
    upload = SimpleUploadedFile("bad.jsonl", "\n".join(lines).encode())
    body = c.post(url(project, "import/upload/"), {"file": upload}, **HTMX).content.decode()
    assert "Nothing was imported" in body and "line 3" in body and "line 7" in body
    assert not Prompt.objects.filter(project=project).exists()
    upload = SimpleUploadedFile("good.jsonl", b'{"prompt": "one"}\n{"prompt": "two"}\n{"prompt": "ONE"}\n')
    body = c.post(url(project, "import/upload/"), {"file": upload}, **HTMX).content.decode()
    assert "Imported 2 new prompts" in body and "duplicate" in body
    assert Prompt.objects.filter(project=project).count() == 2


def test_staff_start_projects_by_default_and_anyone_when_the_site_allows(as_user, bob, settings):
    c = as_user(bob)
    assert c.get("/projects/new/").status_code == 403
    assert "New project" not in c.get("/").content.decode()
    settings.PROJECT_CREATORS = "anyone"
    assert c.get("/projects/new/").status_code == 200
    response = c.post("/projects/new/", {"name": "Poems", "guidelines": "", "completions_per_prompt": 4,
                                         "labels_per_item": 1, "review_rate": 0.2})
    assert response.status_code == 302 and response["Location"] == "/projects/poems/"
    assert Membership.objects.get(project__slug="poems", user=bob).role == "manager"
    assert c.get("/projects/poems/settings/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_big_file_imports_in_the_background_with_progress(as_user, project, alice, charlie, monkeypatch):
    import threading

    monkeypatch.setattr("annotation.views_import.INLINE_BYTES", 100)
    c = as_user(alice)
    lines = "".join(json.dumps({"prompt": f"Question {i}?"}) + "\n" for i in range(300)).encode()
    body = c.post(url(project, "import/upload/"), {"file": SimpleUploadedFile("big.jsonl", lines)},
                  **HTMX).content.decode()
    assert "lines read" in body and "of 300 lines" in body
    token = body.split('data-import-job="')[1].split('"')[0]
    for thread in threading.enumerate():
        if thread.name == f"import-{token[:8]}":
            thread.join(timeout=30)
    body = c.get(url(project, f"import/{token}/"), **HTMX).content.decode()
    assert "Imported 300 new prompts" in body
    assert Prompt.objects.filter(project=project).count() == 300
    # a labeler cannot watch it
    assert as_user(charlie).get(url(project, f"import/{token}/")).status_code == 404


def test_submitting_a_skipped_task_moves_on_and_keeps_the_text_visible(as_user, project, bob, prompts):
    c = as_user(bob)
    a = lease(c, project, "demonstration")
    c.post(url(project, f"tasks/{a.pk}/skip/"), {"reason": "other"}, **HTMX)  # e.g. from a second tab
    body = c.post(url(project, f"tasks/{a.pk}/demonstration/"), {"content": "My careful answer"}, **HTMX)
    body = body.content.decode()
    assert "you skipped this task" in body and "My careful answer" in body
    assert "Name three rivers in Europe." in body  # the next task is already there
    assert not Demonstration.objects.exists()


def test_answer_preview_renders_markdown_safely(as_user, project, bob, eve):
    body = as_user(bob).post(url(project, "preview/"), {"content": "**yes** <script>x()</script>"}).content.decode()
    assert "<strong>yes</strong>" in body and "<script>" not in body
    assert as_user(eve).post(url(project, "preview/"), {"content": "hi"}).status_code == 404
