"""Issue 13 (low): a reviewer may not approve or edit their own label unless the project allows it."""

from annotation.models import ReviewState, TaskKind
from annotation.queue import demonstration_submit, task_next
from tests.annotation.helpers import prompt
from tests.security.helpers import api_as, base


def _own_demo(project, dave):
    project.review_rate = 1.0
    project.save()
    prompt(project, "Question")
    assignment = task_next(project=project, user=dave, kind=TaskKind.DEMONSTRATION)
    return demonstration_submit(assignment=assignment, user=dave, content="My own answer")


def test_a_reviewer_cannot_approve_or_edit_their_own_label_by_default(project, dave):
    demo = _own_demo(project, dave)
    client = api_as(dave)
    approve = client.post(f"{base(project)}/reviews/demonstration/{demo.pk}/approve/", {}, format="json")
    edit = client.post(f"{base(project)}/reviews/demonstration/{demo.pk}/edit/", {"content": "Better"}, format="json")
    assert approve.status_code == 400 and "your own label" in approve.json()["detail"]
    assert edit.status_code == 400 and "your own label" in edit.json()["detail"]
    demo.refresh_from_db()
    assert demo.review_state == ReviewState.PENDING and demo.content == "My own answer"


def test_the_review_page_says_why_too(client, project, dave):
    demo = _own_demo(project, dave)
    client.force_login(dave)
    response = client.post(f"/projects/{project.slug}/review/demonstration/{demo.pk}/approve/")
    assert "your own label" in response.content.decode()
    demo.refresh_from_db()
    assert demo.review_state == ReviewState.PENDING


def test_a_project_can_allow_self_review(project, alice, dave):
    demo = _own_demo(project, dave)
    project.allow_self_review = True
    project.save()
    approve = api_as(dave).post(f"{base(project)}/reviews/demonstration/{demo.pk}/approve/", {}, format="json")
    assert approve.status_code == 200 and approve.json()["review_state"] == ReviewState.APPROVED


def test_the_settings_page_offers_the_switch(client, project, alice):
    client.force_login(alice)
    assert 'name="allow_self_review"' in client.get(f"/projects/{project.slug}/settings/").content.decode()
