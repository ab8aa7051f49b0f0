"""The serving REST API: deployments and rollback, API keys, feedback, moderation review into training labels."""

import pytest
from rest_framework.test import APIClient

from serving.models import Deployment, ModerationEvent
from tests.serving.conftest import sse_events

pytestmark = pytest.mark.django_db


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_alice_deploys_and_rolls_back_others_cannot(alice, bob, eve, project, tiny_version, other_project):
    url = f"/api/projects/{project.slug}/deployments/"
    first = api(alice).post(url, {"policy": tiny_version.name}, format="json")
    assert first.status_code == 201 and first.data["is_active"]
    second = api(alice).post(url, {"policy": tiny_version.name}, format="json")
    assert Deployment.objects.filter(project=project, is_active=True).get().pk == second.data["id"]
    back = api(alice).post(f"{url}{first.data['id']}/activate/")
    assert back.status_code == 200
    assert Deployment.objects.filter(project=project, is_active=True).get().pk == first.data["id"]
    assert [d["id"] for d in api(alice).get(url).data["results"]] == [second.data["id"], first.data["id"]]

    assert api(bob).post(url, {"policy": tiny_version.name}, format="json").status_code == 403
    assert api(eve).post(url, {"policy": tiny_version.name}, format="json").status_code == 404
    assert api(eve).post(f"/api/projects/{other_project.slug}/deployments/{first.data['id']}/activate/").status_code == 404
    missing = api(alice).post(url, {"policy": "no-such-version"}, format="json")
    assert missing.status_code == 400 and "no-such-version" in missing.data["detail"]


def test_a_reward_model_cannot_be_deployed_as_the_chat_model(alice, project, tiny_version):
    from training.models import ModelVersion

    ModelVersion.objects.filter(pk=tiny_version.pk).update(kind="reward")
    response = api(alice).post(f"/api/projects/{project.slug}/deployments/", {"policy": tiny_version.name},
                               format="json")
    assert response.status_code == 400


def test_keys_are_shown_once_and_stored_hashed(bob, charlie):
    created = api(bob).post("/api/keys/", {"name": "eval script"}, format="json")
    assert created.status_code == 201 and created.data["key"].startswith("tl-")
    listed = api(bob).get("/api/keys/").data["results"]
    assert listed[0]["name"] == "eval script" and "key" not in listed[0]
    assert api(charlie).get("/api/keys/").data["results"] == []
    assert api(charlie).delete(f"/api/keys/{created.data['id']}/").status_code == 404, "someone else's key: 404"
    assert api(bob).delete(f"/api/keys/{created.data['id']}/").data["revoked_at"]
    from serving.models import ApiKey

    assert created.data["key"] not in ApiKey.objects.get().key_hash


def test_reviewed_moderation_events_become_moderation_training_labels(client, alice, bob, project, deployed, scripted):
    from training.exports import rows_for

    scripted("fine")
    client.force_login(bob)
    sse_events(client.post(f"/projects/{project.slug}/chat/send", {"text": "I want to kill myself"}))
    sse_events(client.post(f"/projects/{project.slug}/chat/send", {"text": "gas the jews"}))
    events = api(alice).get(f"/api/projects/{project.slug}/moderation-events/").data["results"]
    assert len(events) == 2
    assert api(bob).get(f"/api/projects/{project.slug}/moderation-events/").status_code == 403
    by_text = {e["text"]: e["id"] for e in events}
    review = f"/api/projects/{project.slug}/moderation-events/"
    ok = api(alice).post(f"{review}{by_text['I want to kill myself']}/review/", {"decision": "confirmed"}, format="json")
    assert ok.status_code == 200 and "self-harm" in ok.data["categories"]
    api(alice).post(f"{review}{by_text['gas the jews']}/review/",
                    {"decision": "confirmed", "categories": ["hate", "hate/threatening"]}, format="json")
    labels = sorted((row["text"], row["categories"]) for _, row in rows_for(project, "moderation"))
    assert labels[0] == ("I want to kill myself", ok.data["categories"])
    assert labels[1] == ("gas the jews", ["hate", "hate/threatening"])
    assert ModerationEvent.objects.filter(review="open").count() == 0


def test_feedback_through_the_api_on_your_own_answer_only(client, bob, charlie, project, deployed, scripted):
    scripted("An answer.")
    client.force_login(bob)
    message = sse_events(client.post(f"/projects/{project.slug}/chat/send", {"text": "A question?"}))[-1]["message"]
    url = f"/api/projects/{project.slug}/messages/{message}/feedback/"
    assert api(bob).post(url, {"kind": "report", "comment": "wrong"}, format="json").status_code == 201
    assert api(charlie).post(url, {"kind": "up"}, format="json").status_code == 404


def test_the_openapi_schema_documents_the_serving_and_openai_endpoints(alice):
    schema = api(alice).get("/api/schema/?format=json").json()
    for path in ("/v1/chat/completions", "/v1/moderations", "/v1/models", "/api/projects/{slug}/deployments/",
                 "/api/keys/"):
        assert path in schema["paths"], path
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    body = schema["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("ChatCompletionRequest")
