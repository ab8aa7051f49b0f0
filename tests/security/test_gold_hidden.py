"""Issue 13 item 6: a labeler cannot tell gold items from the others (no filter, no field, no marker)."""

from annotation.models import Prompt
from tests.annotation import helpers
from tests.security.helpers import api_as, base


def _gold(project):
    prompt = helpers.prompt(project, "What is the capital of France?", is_gold=True)
    Prompt.objects.filter(pk=prompt.pk).update(gold_answer={"text": "Paris"})
    helpers.prompt(project, "An ordinary prompt")
    project.gold_rate = 1.0
    project.save()
    return prompt


def test_a_labeler_cannot_filter_prompts_by_gold(project, bob):
    _gold(project)
    response = api_as(bob).get(f"{base(project)}/prompts/?is_gold=true")
    assert response.status_code == 403


def test_a_labeler_sees_prompts_without_any_gold_field(project, bob):
    _gold(project)
    results = api_as(bob).get(f"{base(project)}/prompts/").json()["results"]
    assert len(results) == 2 and all("is_gold" not in p and "gold_answer" not in p for p in results)


def test_a_labelers_task_payload_and_page_carry_no_gold_marker(client, project, bob):
    gold = _gold(project)
    task = api_as(bob).get(f"{base(project)}/tasks/next/?kind=demonstration").json()
    assert task["prompt"]["id"] == gold.pk  # gold_rate 1: the gold item is served first
    assert "gold" not in str(task).lower()
    client.force_login(bob)
    page = client.get(f"/projects/{project.slug}/write/")
    assert page.status_code == 200 and "capital of France" in page.content.decode()
    assert "gold" not in page.content.decode().lower()


def test_reviewers_and_managers_still_see_and_filter_gold(project, alice, dave):
    gold = _gold(project)
    for user in (alice, dave):
        results = api_as(user).get(f"{base(project)}/prompts/?is_gold=true").json()["results"]
        assert [(p["id"], p["is_gold"]) for p in results] == [(gold.pk, True)]
