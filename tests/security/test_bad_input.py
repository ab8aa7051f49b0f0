"""Issue 13 (low): input Python chokes on is a 400 (or a 404 for an id no row can have), never a 500."""

import io

import pytest

from annotation.models import Prompt
from tests.security.helpers import api_as, base

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("value", ["9" * 30, "²", "-1", "1e3", " "])
def test_a_prompt_filter_that_is_no_id_is_a_400(project, alice, value):
    response = api_as(alice).get(f"{base(project)}/demonstrations/", {"prompt": value})
    assert response.status_code in (200, 400), response.status_code
    if value.strip():
        assert response.status_code == 400 and "prompt" in response.json()


def test_a_conversation_or_run_filter_that_is_no_id_is_ignored(client, project, alice):
    client.force_login(alice)
    assert client.get(f"/projects/{project.slug}/chat/?c=²").status_code == 200
    assert client.get(f"/projects/{project.slug}/chat/?c={'9' * 30}").status_code in (200, 404)
    assert client.get(f"/projects/{project.slug}/dashboard/training/?run={'9' * 30}").status_code == 200


def test_a_json_body_nested_too_deeply_is_a_400(project, alice):
    response = api_as(alice).post(f"{base(project)}/prompts/", data='{"records": ' + DEEP + "}",
                                  content_type="application/json")
    assert response.status_code == 400 and "nested too deeply" in response.json()["detail"]


def test_a_jsonl_line_nested_too_deeply_is_a_line_error(project, alice):
    body = b'{"prompt": "fine"}\n{"prompt": "x", "metadata": {"a": ' + DEEP.encode() + b"}}\n"
    upload = io.BytesIO(body)
    upload.name = "deep.jsonl"
    response = api_as(alice).post(f"{base(project)}/prompts/upload/", {"file": upload}, format="multipart")
    assert response.status_code == 400
    assert any(p.startswith("line 2:") and "nested too deeply" in p for p in response.json()["problems"])
    assert not Prompt.objects.exists()


def test_a_run_config_nested_too_deeply_is_a_form_error(client, project, alice):
    client.force_login(alice)
    response = client.post(f"/projects/{project.slug}/runs/", {"kind": "sft", "config": DEEP})
    assert response.status_code == 400 and "nested too deeply" in response.content.decode()


@pytest.mark.parametrize("path", ["/api/projects/", "{base}/prompts/", "{base}/demonstrations/", "{base}/rankings/",
                                  "{base}/members/", "{base}/runs/", "{base}/snapshots/", "{base}/models/",
                                  "{base}/deployments/", "{base}/moderation-events/", "{base}/feedback/", "/api/keys/"])
def test_every_api_list_opened_in_a_browser_answers_json(client, project, alice, path):
    client.force_login(alice)
    response = client.get(path.format(base=base(project)), HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
