"""The queue's per-item slot counts: every transition keeps them true, and claiming does not slow down
as a project fills."""

from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotation.imports import prompts_import_records
from annotation.models import Prompt, TaskKind
from annotation.queue import demonstration_submit, ranking_submit, task_next, task_skip
from annotation.review import review_reject
from annotation.services import completions_add, project_update
from annotation.slots import slots_recount
from tests.annotation.helpers import prompt

DEMO, RANK = TaskKind.DEMONSTRATION, TaskKind.RANKING
COUNTS = ("id", "demonstrations_taken", "rankings_taken", "demonstration_open", "ranking_open")


def counts(project) -> list[tuple]:
    return list(Prompt.objects.filter(project=project).order_by("id").values_list(*COUNTS))


def assert_counts_true(project) -> None:
    kept = counts(project)
    slots_recount(project)
    assert counts(project) == kept


def test_every_transition_keeps_the_slot_counts_true(project, alice, bob, charlie, dave):
    project_update(project=project, labels_per_item=2, review_rate=0)
    for i in range(4):
        completions_add(prompt=prompt(project, f"question {i}"), texts=[f"answer {k}" for k in range(4)])
    prompts_import_records(project=project, user=alice, records=[{"text": "imported", "answer": "Known."}])
    now = timezone.now()
    assert_counts_true(project)

    kept = task_next(project=project, user=bob, kind=DEMO, now=now)
    demonstration_submit(assignment=kept, user=bob, content="Mine.", now=now)
    skipped = task_next(project=project, user=bob, kind=DEMO, now=now)
    task_skip(assignment=skipped, user=bob, reason="not my field", now=now)
    lapsing = task_next(project=project, user=charlie, kind=DEMO, now=now)
    assert_counts_true(project)

    ranked = task_next(project=project, user=charlie, kind=RANK, now=now)
    shown = list(ranked.prompt.completions.order_by("id").values_list("pk", flat=True))
    ranking = ranking_submit(assignment=ranked, user=charlie, order=[[c] for c in shown], now=now)
    review_reject(item=ranking, reviewer=dave, reason="read them again")
    assert_counts_true(project)

    later = now + timedelta(seconds=project.lease_seconds + 1)
    task_next(project=project, user=bob, kind=DEMO, now=later)  # sweeps charlie's passed lease
    demonstration_submit(assignment=lapsing, user=charlie, content="Late but free.", now=later)
    assert_counts_true(project)

    project_update(project=project, labels_per_item=1, completions_per_prompt=5)
    assert_counts_true(project)


def test_raising_labels_per_item_reopens_items_already_done(project, bob, charlie):
    prompt(project, "Only one")
    task = task_next(project=project, user=bob, kind=DEMO)
    demonstration_submit(assignment=task, user=bob, content="Done.")
    assert task_next(project=project, user=charlie, kind=DEMO) is None

    project_update(project=project, labels_per_item=2)

    assert task_next(project=project, user=charlie, kind=DEMO).prompt_id == task.prompt_id


def test_a_prompt_becomes_rankable_when_its_k_completions_arrive(project, bob):
    waiting = prompt(project, "Rank me")
    completions_add(prompt=waiting, texts=["one", "two", "three"])  # K is 4
    assert task_next(project=project, user=bob, kind=RANK) is None

    completions_add(prompt=waiting, texts=["four"])

    assert task_next(project=project, user=bob, kind=RANK).prompt_id == waiting.pk


def test_an_import_with_answers_and_completions_fills_the_right_slots(project, alice, bob):
    prompts_import_records(project=project, user=alice, records=[
        {"text": "answered", "answer": "Already known."},
        {"text": "rank these", "completions": ["a", "b", "c", "d"]},
    ])
    assert_counts_true(project)
    demo = task_next(project=project, user=bob, kind=DEMO)
    rank = task_next(project=project, user=bob, kind=RANK)
    assert demo.prompt.text == "rank these"  # the answered one has its one label
    assert rank.prompt.text == "rank these"


def claim_and_submit_queries(project, user) -> int:
    with CaptureQueriesContext(connection) as queries:
        task = task_next(project=project, user=user, kind=DEMO)
        demonstration_submit(assignment=task, user=user, content="An answer.")
    return len(queries)


def test_claiming_costs_the_same_however_many_items_are_done(project, bob):
    project_update(project=project, review_rate=0)
    for i in range(300):
        prompt(project, f"item {i}")
    early = claim_and_submit_queries(project, bob)
    for _ in range(250):
        claim_and_submit_queries(project, bob)

    late = claim_and_submit_queries(project, bob)

    # SQLite looks the open items up once more, before the write lock (annotation.queue.task_next).
    assert late == early <= (12 if connection.vendor == "postgresql" else 13)
    if connection.vendor == "postgresql":
        # The first open item is found through the partial index, not by walking the 250 done ones.
        with connection.cursor() as cursor:
            cursor.execute(
                "EXPLAIN (ANALYZE, FORMAT JSON) SELECT id FROM annotation_prompt WHERE project_id = %s"
                " AND demonstration_open AND NOT is_gold ORDER BY id LIMIT 1", [project.pk])
            plan = cursor.fetchone()[0][0]["Plan"]
        scanned = plan["Plans"][0]
        assert scanned["Index Name"] == "prompt_demonstration_open" and scanned["Actual Rows"] == 1
