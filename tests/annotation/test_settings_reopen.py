"""Raising "labels per item" on the settings page reopens the items already labeled (issue 16, item 3)."""

from __future__ import annotations

import pytest

from annotation.models import Assignment, TaskKind
from annotation.queue import ranking_submit, task_next
from annotation.services import completions_add, prompt_create

pytestmark = pytest.mark.django_db


def test_raising_labels_per_item_gives_charlie_the_prompt_bob_ranked(client, project, alice, bob, charlie):
    say_hi = prompt_create(project=project, record={"text": "Say hi"})
    completions_add(prompt=say_hi, texts=["Hi!", "Hello.", "Hey", "Yo"])
    bobs = task_next(project=project, user=bob, kind=TaskKind.RANKING)
    ranking_submit(assignment=bobs, user=bob, order=[[c.pk] for c in say_hi.completions.order_by("id")])
    assert task_next(project=project, user=charlie, kind=TaskKind.RANKING) is None  # one label per item: done

    client.force_login(alice)
    page = client.get(f"/projects/{project.slug}/settings/").content.decode()
    assert "Raising it reopens items already labeled" in page
    saved = client.post(f"/projects/{project.slug}/settings/", {
        "name": project.name, "guidelines": project.guidelines, "completions_per_prompt": 4, "labels_per_item": 2,
        "review_rate": project.review_rate, "gold_rate": project.gold_rate, "lease_seconds": project.lease_seconds,
    })
    assert saved.status_code == 302

    charlies = task_next(project=project, user=charlie, kind=TaskKind.RANKING)
    assert charlies is not None and charlies.prompt == say_hi
    assert Assignment.objects.filter(prompt=say_hi, kind=TaskKind.RANKING).count() == 2
