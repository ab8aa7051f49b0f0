"""The task queue as labelers live it: next task, leases, redundancy, skip, flag, double submit, gold."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from annotation.errors import AnnotationError
from annotation.models import (
    Assignment,
    AssignmentStatus,
    Demonstration,
    PromptSource,
    Ranking,
    ReviewState,
    TaskKind,
)
from annotation.pairs import ranking_pairs
from annotation.queue import (
    demonstration_submit,
    prompt_flag,
    prompt_write,
    ranking_submit,
    task_next,
    task_skip,
)
from annotation.review import review_reject
from tests.annotation.helpers import prompt, rankable

DEMO, RANK = TaskKind.DEMONSTRATION, TaskKind.RANKING


def test_two_labelers_on_a_one_slot_item_get_it_once(project, bob, charlie):
    only = prompt(project, "What is HTTP?")

    first = task_next(project=project, user=bob, kind=DEMO)
    second = task_next(project=project, user=charlie, kind=DEMO)

    assert first.prompt == only and second is None


def test_next_returns_the_labelers_live_lease_first(project, bob):
    prompt(project, "One"), prompt(project, "Two")
    first = task_next(project=project, user=bob, kind=DEMO)
    assert task_next(project=project, user=bob, kind=DEMO) == first


def test_an_expired_lease_returns_the_slot_to_the_pool(project, bob, charlie):
    prompt(project, "Only one")
    now = timezone.now()
    lease = task_next(project=project, user=bob, kind=DEMO, now=now)

    later = now + timedelta(seconds=project.lease_seconds + 1)
    taken = task_next(project=project, user=charlie, kind=DEMO, now=later)

    assert taken.prompt_id == lease.prompt_id
    lease.refresh_from_db()
    assert lease.status == AssignmentStatus.EXPIRED
    with pytest.raises(AnnotationError, match="expired and another labeler took it"):
        demonstration_submit(assignment=lease, user=bob, content="late answer", now=later)


def test_an_expired_lease_nobody_took_can_still_be_submitted(project, bob):
    prompt(project, "Slow one")
    now = timezone.now()
    lease = task_next(project=project, user=bob, kind=DEMO, now=now)
    later = now + timedelta(seconds=project.lease_seconds + 5)
    demo = demonstration_submit(assignment=lease, user=bob, content="Still here", now=later)
    assert demo.content == "Still here"


def test_the_same_labeler_gets_an_expired_item_back_when_it_is_still_free(project, bob):
    prompt(project, "Come back")
    now = timezone.now()
    lease = task_next(project=project, user=bob, kind=DEMO, now=now)
    again = task_next(project=project, user=bob, kind=DEMO, now=now + timedelta(seconds=project.lease_seconds + 1))
    assert again.pk == lease.pk and again.status == AssignmentStatus.LEASED


def test_redundancy_gives_each_item_to_labels_per_item_distinct_labelers(project, bob, charlie, dave):
    project.labels_per_item = 2
    project.save()
    a, b = prompt(project, "A"), prompt(project, "B")
    served = []
    for user in (bob, charlie, dave, bob, charlie, dave):
        task = task_next(project=project, user=user, kind=DEMO)
        if task is not None:
            served.append((user.username, task.prompt_id))
            demonstration_submit(assignment=task, user=user, content=f"answer by {user}")

    assert sorted(served) == sorted([("bob", a.pk), ("charlie", a.pk), ("dave", b.pk), ("bob", b.pk)])
    assert Demonstration.objects.filter(prompt=a).count() == 2 and Demonstration.objects.filter(prompt=b).count() == 2
    assert task_next(project=project, user=charlie, kind=DEMO) is None


def test_a_labeler_never_gets_the_same_prompt_twice(project, bob):
    project.labels_per_item = 3
    project.save()
    prompt(project, "Once")
    task = task_next(project=project, user=bob, kind=DEMO)
    demonstration_submit(assignment=task, user=bob, content="done")
    assert task_next(project=project, user=bob, kind=DEMO) is None


def test_a_double_submit_records_one_label(project, bob):
    prompt(project, "Click twice")
    task = task_next(project=project, user=bob, kind=DEMO)
    first = demonstration_submit(assignment=task, user=bob, content="First click")
    second = demonstration_submit(assignment=task, user=bob, content="Second click")
    assert first.pk == second.pk and second.content == "First click"
    assert Demonstration.objects.count() == 1


def test_someone_elses_task_cannot_be_submitted(project, bob, charlie):
    prompt(project, "Mine")
    task = task_next(project=project, user=bob, kind=DEMO)
    with pytest.raises(AnnotationError, match="another labeler"):
        demonstration_submit(assignment=task, user=charlie, content="Not mine")


def test_skip_with_reason_frees_the_slot_for_others_only(project, bob, charlie):
    prompt(project, "Hard one")
    task = task_next(project=project, user=bob, kind=DEMO)
    with pytest.raises(AnnotationError, match="say why"):
        task_skip(assignment=task, user=bob, reason=" ")
    skipped = task_skip(assignment=task, user=bob, reason="Needs expertise")

    assert skipped.status == AssignmentStatus.SKIPPED and skipped.skip_reason == "Needs expertise"
    assert task_next(project=project, user=bob, kind=DEMO) is None
    assert task_next(project=project, user=charlie, kind=DEMO).prompt_id == task.prompt_id
    with pytest.raises(AnnotationError, match="skipped"):
        demonstration_submit(assignment=task, user=bob, content="changed my mind")


def test_flagging_a_prompt_counts_and_keeps_the_reason(project, bob, charlie):
    p = prompt(project, "Give me her address")
    prompt_flag(prompt=p, user=bob, reason="personal data")
    flagged = prompt_flag(prompt=p, user=charlie, reason="harmful")
    assert flagged.flag_count == 2
    assert [f["reason"] for f in flagged.metadata["flags"]] == ["personal data", "harmful"]


def test_a_labeler_writes_a_prompt_that_joins_the_queue(project, bob, charlie):
    written = prompt_write(project=project, user=bob, text="How do tides work?")
    assert written.source == PromptSource.LABELER and written.created_by == bob
    with pytest.raises(AnnotationError, match="already in the project"):
        prompt_write(project=project, user=charlie, text="  how do TIDES work? ")
    assert task_next(project=project, user=charlie, kind=DEMO).prompt == written


@pytest.mark.parametrize(("rate", "pending"), [(0.0, False), (1.0, True)])
def test_submissions_are_sampled_for_review_at_the_projects_rate(project, bob, rate, pending):
    project.review_rate = rate
    project.save()
    prompt(project, "Sample me")
    demo = demonstration_submit(assignment=task_next(project=project, user=bob, kind=DEMO), user=bob, content="x")
    assert demo.needs_review is pending
    assert demo.review_state == (ReviewState.PENDING if pending else ReviewState.APPROVED)


def test_a_rejected_label_returns_its_slot_to_the_queue(project, bob, charlie, dave):
    prompt(project, "Redo me")
    task = task_next(project=project, user=bob, kind=DEMO)
    demo = demonstration_submit(assignment=task, user=bob, content="sloppy")
    assert task_next(project=project, user=charlie, kind=DEMO) is None

    review_reject(item=demo, reviewer=dave, reason="Too short")

    task.refresh_from_db()
    assert task.status == AssignmentStatus.RETURNED
    assert task_next(project=project, user=charlie, kind=DEMO).prompt_id == task.prompt_id
    assert task_next(project=project, user=bob, kind=DEMO) is None


def test_ranking_tasks_need_k_completions_and_take_ties(project, bob):
    prompt(project, "No completions yet")
    p, completions = rankable(project, "Rank us")
    task = task_next(project=project, user=bob, kind=RANK)
    assert task.prompt == p
    a, b, c, d = (x.pk for x in completions)

    ranking = ranking_submit(assignment=task, user=bob, order=[[c], [a, d], [b]], flags={str(b): ["unsafe"]},
                             comment="b is dangerous")

    assert ranking.order == [[c], [a, d], [b]] and ranking.flags == {str(b): ["unsafe"]}
    assert len(ranking_pairs(ranking.order)) == 6 - 1
    again = ranking_submit(assignment=task, user=bob, order=[[a], [b], [c], [d]])
    assert again.pk == ranking.pk and Ranking.objects.count() == 1


def test_a_ranking_must_cover_exactly_this_prompts_completions(project, other_project, bob):
    _, completions = rankable(project, "Rank us")
    _, foreign = rankable(other_project, "Elsewhere")
    task = task_next(project=project, user=bob, kind=RANK)
    a, b, c, d = (x.pk for x in completions)

    cases = [
        ([[a], [b], [c], [foreign[0].pk]], f"completion {foreign[0].pk} is not one of this prompt's answers"),
        ([[a], [b], [c]], f"completions {d} are not ranked"),
        ([[a, b], [b], [c, d]], f"completion {b} is placed twice"),
        ([[a], ["b"], [c], [d]], "is not a completion id"),
        ("a>b", "list of tiers"),
    ]
    for order, message in cases:
        with pytest.raises(AnnotationError, match=message):
            ranking_submit(assignment=task, user=bob, order=order)
    with pytest.raises(AnnotationError, match="'rude' on completion"):
        ranking_submit(assignment=task, user=bob, order=[[a, b, c, d]], flags={str(a): ["rude"]})
    with pytest.raises(AnnotationError, match=f"completion {foreign[0].pk} is not one"):
        ranking_submit(assignment=task, user=bob, order=[[a, b, c, d]], flags={str(foreign[0].pk): ["unsafe"]})
    assert not Ranking.objects.exists()
    assert Assignment.objects.get(pk=task.pk).status == AssignmentStatus.LEASED


def test_gold_items_are_served_at_the_gold_rate(project, bob):
    project.gold_rate = 0.5
    project.save()
    for i in range(4):
        prompt(project, f"normal {i}")
    for i in range(2):
        prompt(project, f"gold {i}", is_gold=True, gold_answer={"text": "known"})

    served = []
    for _ in range(6):
        task = task_next(project=project, user=bob, kind=DEMO)
        served.append(task.prompt.is_gold)
        demonstration_submit(assignment=task, user=bob, content="answer")

    assert served[:4] == [False, True, False, True]
    assert served.count(True) == 2  # gold runs out: normal items keep coming


def test_gold_items_are_not_served_when_the_rate_is_zero(project, bob):
    prompt(project, "gold", is_gold=True)
    assert task_next(project=project, user=bob, kind=DEMO) is None


def test_an_unknown_kind_is_refused(project, bob):
    with pytest.raises(AnnotationError, match="unknown task kind"):
        task_next(project=project, user=bob, kind="moderation")


@pytest.mark.django_db(transaction=True)
def test_concurrent_labelers_fill_every_slot_exactly(project, make_user):
    """20 labelers on threads pull and submit until every slot is full: 2,000 on PostgreSQL, 400 on SQLite
    (one writer at a time there: annotation.serialised)."""
    import threading

    from django.db import connections

    from annotation.models import Membership, Prompt, Role
    from annotation.prompt_text import normalized_hash

    project.labels_per_item = 2
    project.review_rate = 0
    project.save()
    items = 1000 if connection.vendor == "postgresql" else 200
    messages = [[{"role": "user", "content": f"item {i}"}] for i in range(items)]
    Prompt.objects.bulk_create(Prompt(project=project, messages=m, normalized_hash=normalized_hash(m)) for m in messages)
    labelers = [make_user(f"labeler{i}") for i in range(20)]
    Membership.objects.bulk_create(Membership(project=project, user=u, role=Role.LABELER) for u in labelers)
    errors, acknowledged = [], []

    def work(user):
        try:
            while (task := task_next(project=project, user=user, kind=DEMO)) is not None:
                acknowledged.append(demonstration_submit(assignment=task, user=user, content=f"by {user.username}").pk)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(u,)) for u in labelers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert not errors
    per_prompt = {}
    for demo in Demonstration.objects.all():
        per_prompt.setdefault(demo.prompt_id, []).append(demo.author_id)
    assert len(per_prompt) == items
    assert all(len(authors) == 2 and len(set(authors)) == 2 for authors in per_prompt.values())
    assert sorted(acknowledged) == sorted(Demonstration.objects.values_list("pk", flat=True))  # none lost
    assert not Prompt.objects.filter(project=project, demonstration_open=True).exists()
