"""Issue 13, High 1: a project cannot pull another user's /v1 traffic in.

The attack on the old code: eve starts a project, adds bob without asking, deploys the shared
``base`` there with a catch-all custom category, and bob's unchanged ``{"model": "base"}`` lands in
eve's project. Now bob joins only by accepting, and a name two of his deployments answer to is a
400 listing both ids, never a silent pick.
"""

import shutil

import pytest
from rest_framework.test import APIClient

from serving.keys import api_key_create
from serving.models import Conversation, ModerationEvent


def as_key(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(user=user, name='tests')[1]}")
    return client


@pytest.fixture
def shared(db, tiny_model_dir):
    """A shared policy version (no project), like ``base``: any project may deploy it."""
    from training.models import VersionKind
    from training.registry import model_version_register, version_dir

    folder = version_dir("shared")
    shutil.copytree(tiny_model_dir, folder)
    return model_version_register(name="shared", kind=VersionKind.POLICY, folder=folder)


@pytest.fixture
def both_deploy_shared(project, other_project, shared, alice, eve, scripted):
    from serving.services import deployment_create, serving_settings_update

    deployment_create(project=project, policy=shared, created_by=alice)
    deployment_create(project=other_project, policy=shared, created_by=eve)
    serving_settings_update(project=other_project, feedback_to_prompts=False,
                            custom_categories={"gotcha": ["re:[\\s\\S]"]})
    return scripted("An honest answer.")


def ask(client, model: str):
    return client.post("/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": "hi"}]},
                       format="json")


def test_adding_a_user_to_a_project_does_not_take_over_their_model_name(both_deploy_shared, project, bob, eve):
    invited = as_key(eve).post("/api/projects/other/members/", {"username": "bob", "role": "labeler"}, format="json")
    assert invited.status_code == 201, "an invitation, not a membership"
    bob_api = as_key(bob)
    assert [m["id"] for m in bob_api.get("/v1/models").json()["data"]] == ["assistant/shared"]
    answer = ask(bob_api, "shared")
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == "An honest answer."
    assert answer.json()["model"] == "assistant/shared"
    assert list(Conversation.objects.values_list("project__slug", flat=True)) == ["assistant"]
    assert not ModerationEvent.objects.exists(), "eve's catch-all category never saw bob's message"


def test_an_ambiguous_model_name_is_a_400_listing_the_ids(both_deploy_shared, project, other_project, bob, eve):
    from annotation.selectors import invitations_for
    from annotation.services import invitation_accept, membership_invite

    membership_invite(project=other_project, user=bob, role="labeler", invited_by=eve)
    invitation_accept(invitation=invitations_for(bob).get(), user=bob)
    bob_api = as_key(bob)
    assert sorted(m["id"] for m in bob_api.get("/v1/models").json()["data"]) == ["assistant/shared", "other/shared"]
    ambiguous = ask(bob_api, "shared")
    assert ambiguous.status_code == 400
    error = ambiguous.json()["error"]
    assert error["code"] == "model_ambiguous" and error["param"] == "model"
    assert "assistant/shared" in error["message"] and "other/shared" in error["message"]
    assert not Conversation.objects.exists()
    assert ask(bob_api, "assistant/shared").json()["model"] == "assistant/shared"
    assert ask(bob_api, "other").json()["model"] == "other/shared", "a project slug names one deployment"
    assert sorted(Conversation.objects.values_list("project__slug", flat=True)) == ["assistant", "other"]


def test_an_invitation_is_declined_or_accepted_by_the_invited_user_only(project, alice, bob, eve, client):
    invited = as_key(alice).post("/api/projects/assistant/members/", {"username": "eve", "role": "manager"},
                                 format="json").json()
    assert as_key(bob).post(f"/api/invitations/{invited['id']}/accept/").status_code == 404
    assert as_key(eve).get("/api/projects/assistant/").status_code == 404
    client.force_login(eve)
    assert "Invitations" in client.get("/").content.decode()
    assert client.post(f"/invitations/{invited['id']}/decline/").status_code == 302
    assert as_key(eve).get("/api/invitations/").json()["results"] == []
    assert as_key(eve).get("/api/projects/assistant/").status_code == 404


def test_a_site_admin_adds_members_directly(project, django_user_model, eve):
    root = django_user_model.objects.create_superuser("root", password="pw-root")
    added = as_key(root)
    from annotation.services import membership_set

    membership_set(project=project, user=root, role="manager")
    response = added.post("/api/projects/assistant/members/", {"username": "eve", "role": "labeler"}, format="json")
    assert response.status_code == 200 and response.json()["role"] == "labeler"
    assert as_key(eve).get("/api/projects/assistant/").json()["role"] == "labeler"


def test_only_staff_start_projects_unless_the_site_lets_anyone(db, bob, settings):
    refused = as_key(bob).post("/api/projects/", {"name": "Bob's lab"}, format="json")
    assert refused.status_code == 403 and "TUNELOOP_PROJECT_CREATORS" in refused.json()["detail"]
    settings.PROJECT_CREATORS = "anyone"
    assert as_key(bob).post("/api/projects/", {"name": "Bob's lab"}, format="json").status_code == 201
