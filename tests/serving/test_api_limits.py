"""Issue 13, Low: the /v1 limits a caller can see: body size, moderation inputs, max_tokens per
deployment; and the 404 for someone else's key."""

import json

import pytest
from django.test import Client

from serving.keys import api_key_create


@pytest.fixture
def bob_http(bob):
    _, key = api_key_create(user=bob, name="tests")
    return Client(HTTP_AUTHORIZATION=f"Bearer {key}")


def post(client, path: str, body) -> object:
    return client.post(path, body if isinstance(body, str | bytes) else json.dumps(body),
                       content_type="application/json")


def test_a_body_over_the_limit_is_an_openai_style_413(bob_http, deployed, settings):
    settings.API_MAX_BODY_BYTES = 10_000
    huge = {"model": deployed.policy.name, "messages": [{"role": "user", "content": "x" * 20_000}]}
    for path in ("/v1/chat/completions", "/v1/moderations"):
        response = post(bob_http, path, huge)
        assert response.status_code == 413 and response["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] == "request_too_large"
        assert "10000 bytes" in response.json()["error"]["message"]


def test_the_default_body_limit_answers_json_not_an_html_page(bob_http, deployed):
    response = post(bob_http, "/v1/moderations", {"input": "x" * (21 * 1024 * 1024)})
    assert response.status_code == 413 and response.json()["error"]["type"] == "invalid_request_error"


def test_moderation_inputs_are_capped_in_number_and_size(bob_http, db, settings):
    many = post(bob_http, "/v1/moderations", {"input": ["fine"] * (settings.MODERATION_MAX_INPUTS + 1)})
    assert many.status_code == 400 and f"at most {settings.MODERATION_MAX_INPUTS}" in many.json()["error"]["message"]
    long = post(bob_http, "/v1/moderations", {"input": ["fine", "y" * (settings.MODERATION_MAX_CHARS + 1)]})
    assert long.status_code == 400 and long.json()["error"]["param"] == "input[1]"
    assert post(bob_http, "/v1/moderations", {"input": ["fine"] * 3}).status_code == 200


def test_max_tokens_is_capped_by_the_deployment(bob_http, deployed, scripted, project, tiny_version, alice):
    from serving.services import deployment_create

    scripted("ok")
    ask = {"model": deployed.policy.name, "messages": [{"role": "user", "content": "hi"}]}
    assert deployed.max_tokens == 512
    over = post(bob_http, "/v1/chat/completions", {**ask, "max_tokens": 8192})
    assert over.status_code == 400 and over.json()["error"]["param"] == "max_tokens"
    assert "between 1 and 512" in over.json()["error"]["message"]
    assert post(bob_http, "/v1/chat/completions", {**ask, "max_tokens": 512}).status_code == 200
    deployment_create(project=project, policy=tiny_version, created_by=alice, max_tokens=1024)
    assert post(bob_http, "/v1/chat/completions", {**ask, "max_tokens": 1000}).status_code == 200


def test_a_manager_sets_the_cap_when_deploying(client, alice, project, tiny_version):
    client.force_login(alice)
    client.post(f"/projects/{project.slug}/deployments/", {"policy": tiny_version.pk, "max_tokens": "300"})
    from serving.selectors import active_deployment

    assert active_deployment(project).max_tokens == 300
    page = client.get(f"/projects/{project.slug}/deployments/").content.decode()
    assert f'"model": "{project.slug}/{tiny_version.name}"' in page.replace("&quot;", '"')


def test_revoking_someone_elses_key_is_a_404_on_the_page_too(client, bob, charlie):
    key, _ = api_key_create(user=bob, name="bob's")
    client.force_login(charlie)
    assert client.post("/account/keys/", {"revoke": key.pk}).status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None


def test_the_chat_page_keeps_its_256_tokens_unless_the_deployment_allows_fewer(deployed, project, tiny_version, alice):
    from serving.chat import page_params
    from serving.services import deployment_create

    assert page_params(deployed).max_tokens == 256
    assert page_params(deployment_create(project=project, policy=tiny_version, created_by=alice,
                                         max_tokens=100)).max_tokens == 100
