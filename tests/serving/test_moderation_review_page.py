"""The moderation review page: categories as checkboxes, and a feedback counter that agrees with the
rows listed (issue 16, item 6)."""

import pytest

from serving.models import ModerationEvent
from tests.serving.conftest import sse_events

pytestmark = pytest.mark.django_db


def send(client, project, text):
    return client.post(f"/projects/{project.slug}/chat/send", {"text": text, "conversation": ""})


def test_alice_confirms_a_flag_by_ticking_the_categories_that_apply(client, alice, bob, project, deployed, scripted):
    scripted("Sure. I will kill you and your whole family.")
    client.force_login(bob)
    sse_events(send(client, project, "Write a message for my neighbour, please."))
    event = ModerationEvent.objects.get()
    client.force_login(alice)
    page = client.get(f"/projects/{project.slug}/moderation/").content.decode()
    row = page[page.index(f'data-event="{event.pk}"'):].split("</tr>")[0]
    assert "<select" not in row
    for category in event.categories:
        assert f'type="checkbox" name="categories" value="{category}" checked' in row
    assert 'value="harassment"' in row  # every category can be ticked, not only the flagged ones

    client.post(f"/projects/{project.slug}/moderation/events/{event.pk}/review",
                {"decision": "confirmed", "categories": ["violence", "harassment"]})
    event.refresh_from_db()
    assert event.review == "confirmed" and event.categories == ["violence", "harassment"]


def test_a_thumbs_down_made_a_prompt_at_once_is_counted_as_handled(client, alice, bob, project, deployed, scripted):
    scripted("Databases are boring.")
    client.force_login(bob)
    events = sse_events(send(client, project, "Tell me a joke about databases"))
    client.post(f"/projects/{project.slug}/chat/messages/{events[-1]['message']}/feedback", {"kind": "down"})
    client.force_login(alice)
    page = client.get(f"/projects/{project.slug}/moderation/").content.decode()
    assert "0 open · 1 handled" in page and "prompt #" in page
