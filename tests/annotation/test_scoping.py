"""Every annotation API endpoint is scoped: another project's manager gets 404 whatever the id,
a labeler gets 403 on manager and reviewer endpoints, and nobody reaches another labeler's task."""

import pytest
from rest_framework.test import APIClient

from annotation.models import Demonstration, Ranking, ReviewState
from annotation.queue import demonstration_submit, ranking_submit, task_next
from serving.keys import api_key_create
from tests.annotation.helpers import prompt, rankable


def api_as(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(user=user, name='tests')[1]}")
    return client


@pytest.fixture
def world(project, bob, charlie):
    """A demonstration task (bob's, submitted, pending review) and a ranking task (charlie's, submitted)."""
    project.review_rate = 1.0
    project.save()
    p = prompt(project, "Question")
    demo_task = task_next(project=project, user=bob, kind="demonstration")
    demo = demonstration_submit(assignment=demo_task, user=bob, content="Answer")
    _, completions = rankable(project, "Rank")
    rank_task = task_next(project=project, user=charlie, kind="ranking")
    ranking = ranking_submit(assignment=rank_task, user=charlie, order=[[c.pk] for c in completions])
    return {"slug": project.slug, "prompt": p.pk, "task": demo_task.pk, "rank_task": rank_task.pk,
            "demo": demo.pk, "ranking": ranking.pk}


ENDPOINTS = [
    ("get", "/api/projects/{slug}/", None),
    ("get", "/api/projects/{slug}/prompts/", None),
    ("post", "/api/projects/{slug}/prompts/", {"records": [{"prompt": "x"}]}),
    ("post", "/api/projects/{slug}/prompts/upload/", None),
    ("post", "/api/projects/{slug}/prompts/write/", {"text": "new"}),
    ("post", "/api/projects/{slug}/prompts/{prompt}/flag/", {"reason": "bad"}),
    ("get", "/api/projects/{slug}/tasks/next/", None),
    ("post", "/api/projects/{slug}/tasks/next/", None),
    ("get", "/api/projects/{slug}/tasks/{task}/", None),
    ("post", "/api/projects/{slug}/tasks/{task}/demonstration/", {"content": "x"}),
    ("post", "/api/projects/{slug}/tasks/{rank_task}/ranking/", {"order": []}),
    ("post", "/api/projects/{slug}/tasks/{task}/skip/", {"reason": "x"}),
    ("get", "/api/projects/{slug}/demonstrations/", None),
    ("get", "/api/projects/{slug}/rankings/", None),
    ("get", "/api/projects/{slug}/me/", None),
    ("get", "/api/projects/{slug}/reviews/", None),
    ("post", "/api/projects/{slug}/reviews/demonstration/{demo}/approve/", {}),
    ("post", "/api/projects/{slug}/reviews/demonstration/{demo}/edit/", {"content": "y"}),
    ("post", "/api/projects/{slug}/reviews/ranking/{ranking}/reject/", {"reason": "z"}),
    ("get", "/api/projects/{slug}/members/", None),
    ("post", "/api/projects/{slug}/members/", {"username": "eve", "role": "manager"}),
]
MANAGER_ONLY = {"/api/projects/{slug}/prompts/upload/", "/api/projects/{slug}/members/"}
REVIEWER_ONLY = {path for _, path, _ in ENDPOINTS if "/reviews/" in path}


def call(client, method, path, body, world):
    url = path.format(**world)
    if method == "get":
        return client.get(url)
    return client.post(url, body or {}, format="json")


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_another_projects_manager_gets_404_everywhere(world, eve, other_project, method, path, body):
    response = call(api_as(eve), method, path, body, world)
    assert response.status_code == 404, (path, response.content)


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_nobody_signed_in_gets_in(world, method, path, body):
    assert call(APIClient(), method, path, body, world).status_code in (401, 403)


@pytest.mark.parametrize(("method", "path", "body"),
                         [e for e in ENDPOINTS if e[1] in MANAGER_ONLY | REVIEWER_ONLY or e[:2] == (
                             "post", "/api/projects/{slug}/prompts/")])
def test_a_labeler_is_refused_manager_and_reviewer_endpoints_with_a_reason(world, bob, method, path, body):
    response = call(api_as(bob), method, path, body, world)
    assert response.status_code == 403
    assert response.json()["detail"].startswith("only ")


def test_a_reviewer_reviews_but_cannot_import_or_manage(world, dave):
    client = api_as(dave)
    assert client.get(f"/api/projects/{world['slug']}/reviews/?kind=ranking").json()["count"] == 1
    assert client.post(f"/api/projects/{world['slug']}/reviews/demonstration/{world['demo']}/approve/", {},
                       format="json").status_code == 200
    assert Demonstration.objects.get(pk=world["demo"]).review_state == ReviewState.APPROVED
    assert client.post(f"/api/projects/{world['slug']}/prompts/", {"records": [{"prompt": "x"}]},
                       format="json").status_code == 403
    assert client.get(f"/api/projects/{world['slug']}/members/").status_code == 403


def test_a_labeler_cannot_reach_another_labelers_task(world, charlie):
    client = api_as(charlie)
    assert client.get(f"/api/projects/{world['slug']}/tasks/{world['task']}/").status_code == 404
    response = client.post(f"/api/projects/{world['slug']}/tasks/{world['task']}/demonstration/", {"content": "x"},
                           format="json")
    assert response.status_code == 404


def test_ids_of_another_project_are_404_even_for_this_projects_manager(world, alice, eve, other_project):
    foreign = prompt(other_project, "Elsewhere")
    foreign_task = task_next(project=other_project, user=eve, kind="demonstration")
    foreign_demo = demonstration_submit(assignment=foreign_task, user=eve, content="theirs")
    client = api_as(alice)
    slug = world["slug"]
    assert client.post(f"/api/projects/{slug}/prompts/{foreign.pk}/flag/", {"reason": "x"},
                       format="json").status_code == 404
    assert client.get(f"/api/projects/{slug}/tasks/{foreign_task.pk}/").status_code == 404
    assert client.post(f"/api/projects/{slug}/reviews/demonstration/{foreign_demo.pk}/reject/", {"reason": "x"},
                       format="json").status_code == 404
    assert Demonstration.objects.get(pk=foreign_demo.pk).review_state != ReviewState.REJECTED
    assert not Ranking.objects.filter(prompt__project=other_project).exists()
