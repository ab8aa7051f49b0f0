"""Migration 0004 fills the queue's slot counts from the labels an existing install already has."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.migration_steps import back_to_latest, migrate  # noqa: F401 (a fixture)

BEFORE, AFTER = [("annotation", "0003_gold_items")], [("annotation", "0004_queue_slot_counts")]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("back_to_latest")
def test_the_slot_counts_migration_counts_existing_labels():
    apps = migrate(BEFORE)
    User = apps.get_model("auth", "User")
    Project = apps.get_model("annotation", "Project")
    Prompt = apps.get_model("annotation", "Prompt")
    Assignment = apps.get_model("annotation", "Assignment")
    Demonstration = apps.get_model("annotation", "Demonstration")
    Completion = apps.get_model("annotation", "Completion")
    bob, ann = User.objects.create(username="bob"), User.objects.create(username="ann")
    project = Project.objects.create(name="Old", slug="old", created_by=bob, labels_per_item=2, completions_per_prompt=2)
    done, leased, imported, _untouched = (Prompt.objects.create(project=project, messages=[{"role": "user", "content": t}],
                                                               normalized_hash=t) for t in "abcd")
    soon = timezone.now() + timedelta(hours=1)
    for user in (bob, ann):
        Assignment.objects.create(project=project, prompt=done, kind="demonstration", user=user, status="submitted",
                                  expires_at=soon)
    Assignment.objects.create(project=project, prompt=leased, kind="demonstration", user=bob, expires_at=soon)
    Assignment.objects.create(project=project, prompt=leased, kind="ranking", user=ann, status="skipped", expires_at=soon)
    Demonstration.objects.create(prompt=imported, author=bob, content="Known.")
    for text in ("one", "two"):
        Completion.objects.create(prompt=leased, text=text)

    apps = migrate(AFTER)

    counted = {p.normalized_hash: (p.demonstrations_taken, p.demonstration_open, p.rankings_taken, p.ranking_open)
               for p in apps.get_model("annotation", "Prompt").objects.all()}
    assert counted == {"a": (2, False, 0, False), "b": (1, True, 0, True), "c": (1, True, 0, False),
                       "d": (0, True, 0, False)}

