"""Review as a reviewer lives it: the sampled queue, approve, edit (original kept), reject (slot returns)."""

import pytest

from annotation.errors import AnnotationError
from annotation.models import AssignmentStatus, ReviewState, TaskKind
from annotation.pairs import ranking_pairs
from annotation.queue import demonstration_submit, ranking_submit, task_next
from annotation.review import review_approve, review_edit, review_queue, review_reject
from annotation.selectors import approved_demonstrations
from tests.annotation.helpers import prompt, rankable

DEMO, RANK = TaskKind.DEMONSTRATION, TaskKind.RANKING


@pytest.fixture
def reviewed_project(project):
    project.review_rate = 1.0
    project.save()
    return project


def written(project, user, text="Question", answer="Answer"):
    prompt(project, text)
    return demonstration_submit(assignment=task_next(project=project, user=user, kind=DEMO), user=user, content=answer)


def test_the_review_queue_holds_sampled_pending_items_oldest_first(reviewed_project, bob, charlie):
    first = written(reviewed_project, bob, "Q1")
    second = written(reviewed_project, charlie, "Q2")
    assert list(review_queue(project=reviewed_project, kind=DEMO)) == [first, second]
    assert not review_queue(project=reviewed_project, kind=RANK).exists()


def test_approval_makes_a_demonstration_eligible_for_sft(reviewed_project, bob, dave):
    demo = written(reviewed_project, bob)
    assert demo not in approved_demonstrations(reviewed_project)

    review_approve(item=demo, reviewer=dave, comment="Good")

    assert demo.review_state == ReviewState.APPROVED and demo.reviewer == dave and demo.review_comment == "Good"
    assert list(approved_demonstrations(reviewed_project)) == [demo]
    assert not review_queue(project=reviewed_project, kind=DEMO).exists()


def test_an_edit_keeps_the_labelers_original(reviewed_project, bob, dave):
    demo = written(reviewed_project, bob, answer="Teh answer")
    review_edit(item=demo, reviewer=dave, content="The answer")
    assert (demo.content, demo.original_content, demo.review_state) == ("The answer", "Teh answer", "approved")
    review_edit(item=demo, reviewer=dave, content="The answer, again")
    assert demo.original_content == "Teh answer"
    with pytest.raises(AnnotationError, match="cannot be empty"):
        review_edit(item=demo, reviewer=dave, content="  ")


def test_a_rejection_needs_a_reason_and_returns_the_item_to_the_queue(reviewed_project, bob, charlie, dave):
    demo = written(reviewed_project, bob)
    with pytest.raises(AnnotationError, match="say why"):
        review_reject(item=demo, reviewer=dave, reason="")

    review_reject(item=demo, reviewer=dave, reason="Off topic")

    assert demo.review_state == ReviewState.REJECTED and demo.review_comment == "Off topic"
    assert demo.assignment.status == AssignmentStatus.RETURNED
    assert demo not in approved_demonstrations(reviewed_project)
    assert task_next(project=reviewed_project, user=charlie, kind=DEMO).prompt_id == demo.prompt_id
    with pytest.raises(AnnotationError, match="already rejected"):
        review_approve(item=demo, reviewer=dave)


def test_rankings_are_approved_or_rejected_but_not_edited(reviewed_project, bob, dave):
    _, completions = rankable(reviewed_project, "Rank")
    task = task_next(project=reviewed_project, user=bob, kind=RANK)
    ranking = ranking_submit(assignment=task, user=bob, order=[[c.pk] for c in completions])
    assert list(review_queue(project=reviewed_project, kind=RANK)) == [ranking]
    assert len(ranking_pairs(ranking.order)) == 6

    with pytest.raises(AnnotationError, match="only demonstrations can be edited"):
        review_edit(item=ranking, reviewer=dave, content="x")
    review_reject(item=ranking, reviewer=dave, reason="Random order")
    task.refresh_from_db()
    assert task.status == AssignmentStatus.RETURNED


def test_an_auto_approved_label_can_still_be_rejected(project, bob, dave):
    project.review_rate = 0
    project.save()
    demo = written(project, bob)
    assert demo.review_state == ReviewState.APPROVED
    review_reject(item=demo, reviewer=dave, reason="Spotted later")
    assert demo.review_state == ReviewState.REJECTED


def test_an_unknown_review_kind_is_refused(project):
    with pytest.raises(AnnotationError, match="unknown review kind"):
        review_queue(project=project, kind="moderation")
