"""The labeling API writes tasks and demonstrations as plain dicts (annotation/api_shapes.py): the same JSON
its serializers (the schema's description) make, for every kind of task and role."""

import json

from rest_framework.renderers import JSONRenderer
from rest_framework.test import APIClient

from annotation import api_serializers as s
from annotation.models import Assignment, Demonstration
from annotation.review import review_edit
from serving.keys import api_key_create
from tests.annotation.helpers import prompt, rankable


def api_as(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(user=user, name='tests')[1]}")
    return client


def as_json(data) -> dict:
    return json.loads(JSONRenderer().render(data))


def test_a_demonstration_task_and_its_answer_read_as_the_serializers_write_them(project, bob, dave):
    project.review_rate = 0
    project.save()
    prompt(project, "What is a monad?", metadata={"topic": "fp"})
    base = f"/api/projects/{project.slug}"
    client = api_as(bob)

    task = client.get(f"{base}/tasks/next/?kind=demonstration").json()
    assignment = Assignment.objects.select_related("prompt").get(pk=task["id"])
    assert task == as_json(s.TaskSerializer(assignment, context={"show_gold": False}).data)
    assert "is_gold" not in task["prompt"] and task["prompt"]["metadata"] == {"topic": "fp"}
    assert task["expires_at"].endswith("Z")

    answer = client.post(f"{base}/tasks/{task['id']}/demonstration/", {"content": "A monoid..."}, format="json")
    assert answer.status_code == 201
    stored = Demonstration.objects.get(pk=answer.json()["id"])
    assert answer.json() == as_json(s.DemonstrationSerializer(stored).data)
    assert client.get(f"{base}/tasks/{task['id']}/").json() == as_json(
        s.TaskSerializer(Assignment.objects.get(pk=task["id"]), context={"show_gold": False}).data)

    review_edit(item=stored, reviewer=dave, content="A monoid in the category of endofunctors.")
    retry = client.post(f"{base}/tasks/{task['id']}/demonstration/", {"content": "again"}, format="json")
    assert retry.status_code == 200
    assert retry.json() == as_json(s.DemonstrationSerializer(Demonstration.objects.get(pk=stored.pk)).data)
    assert retry.json()["reviewer"] == "dave" and retry.json()["original_content"] == "A monoid..."


def test_a_ranking_task_shows_its_completions_and_gold_only_to_reviewers(project, bob, dave):
    project.gold_rate = 1.0
    project.save()
    rankable(project, "Say hi", is_gold=True)
    base = f"/api/projects/{project.slug}"
    for user, show_gold in ((dave, True), (bob, False)):
        task = api_as(user).get(f"{base}/tasks/next/?kind=ranking").json()
        assignment = Assignment.objects.select_related("prompt").get(pk=task["id"])
        assert task == as_json(s.TaskSerializer(assignment, context={"show_gold": show_gold}).data)
        assert len(task["completions"]) == 4
        assert ("is_gold" in task["prompt"]) is show_gold
