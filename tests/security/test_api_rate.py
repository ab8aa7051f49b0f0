"""TUNELOOP_API_RATE holds on the labeling hot path: past it a script gets 429 with Retry-After, per user."""

from rest_framework.throttling import UserRateThrottle

from tests.annotation.helpers import prompt
from tests.annotation.test_api_shapes import api_as


def test_a_labeler_past_the_rate_is_told_to_wait_and_others_are_not(project, bob, charlie, monkeypatch):
    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", {"user": "3/min"})
    for i in range(5):
        prompt(project, f"Question {i}")
    base = f"/api/projects/{project.slug}"
    client = api_as(bob)

    answers = [client.get(f"{base}/tasks/next/?kind=demonstration") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    refused = client.post(f"{base}/tasks/{answers[0].json()['id']}/demonstration/", {"content": "x"}, format="json")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert api_as(charlie).get(f"{base}/tasks/next/?kind=demonstration").status_code == 200
