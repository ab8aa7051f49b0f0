"""What a user of the chat and the API notices of the engine: honest token counts, a model still loading."""

import pytest

from serving.keys import api_key_create

pytestmark = pytest.mark.django_db


def test_usage_counts_the_templated_prompt_and_the_generated_tokens(client, bob, deployed):
    from serving.runtime import engine_of

    _, key = api_key_create(user=bob, name="tests")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]
    response = client.post("/v1/chat/completions", {"model": deployed.policy.name, "messages": messages,
                                                    "max_tokens": 7, "temperature": 0},
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200, response.json()
    body = response.json()
    engine = engine_of(deployed)
    templated = engine.prompt_ids(messages)
    assert len(templated) > sum(len(engine.tokenizer.encode(m["content"])) for m in messages) + 4, \
        "the chat template adds role markers the model reads too"
    assert body["usage"]["prompt_tokens"] == len(templated)
    assert body["choices"][0]["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 7
    assert body["usage"]["total_tokens"] == len(templated) + 7


def test_the_chat_page_says_when_the_model_is_still_loading(client, bob, project, deployed, monkeypatch):
    from serving import runtime
    from training.registry import version_path

    client.force_login(bob)
    assert b"The model is loading" not in client.get(f"/projects/{project.slug}/chat/").content
    folder = str(version_path(deployed.policy).resolve())
    monkeypatch.setattr(runtime, "engine_states", lambda: {folder: {"state": "loading"}})
    assert b"The model is loading" in client.get(f"/projects/{project.slug}/chat/").content


def test_beyond_the_batch_and_its_queue_the_api_answers_429_until_a_place_frees(client, bob, deployed, settings):
    from serving.engine import GenerationParams
    from serving.runtime import engine_of

    settings.ENGINE_CAPACITY, settings.ENGINE_QUEUE = 1, 0
    _, key = api_key_create(user=bob, name="tests")

    def ask():
        return client.post("/v1/chat/completions", {"model": deployed.policy.name, "max_tokens": 4,
                                                    "messages": [{"role": "user", "content": "hello"}]},
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}")

    engine = engine_of(deployed)
    engine.scheduler.eos = set()  # the random tiny model could sample its end token within ms; this answer runs on
    long_answer = engine.stream([{"role": "user", "content": "hi"}], GenerationParams(max_tokens=4000))
    response = ask()
    assert response.status_code == 429 and response.json()["error"]["code"] == "engine_busy"
    long_answer.close()
    assert ask().status_code == 200
