"""The manager's project dashboard: states, pace, labelers, filters, quality, and who may see it."""

import datetime as dt

import pytest
from django.utils import timezone

from annotation.dashboard import Filters, item_states, labels_per_day, median_seconds, project_dashboard
from annotation.models import Assignment, Demonstration, Prompt, Ranking, ReviewState, TaskKind
from tests.training import labels

TODAY = dt.date(2026, 11, 20)


def at(day: dt.date, hour: int = 12) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC)


def demo(project, author, text, *, state=ReviewState.APPROVED, needs_review=False, day=TODAY, ms=0):
    d = labels.demonstration(project, author, text, "answer", state=state)
    Demonstration.objects.filter(pk=d.pk).update(created_at=at(day), needs_review=needs_review, time_spent_ms=ms)
    return d


@pytest.fixture
def filled(project, bob, charlie):
    """Four prompts wanting 2 labels each; demonstrations in every state, one live lease."""
    project.labels_per_item = 2
    project.save()
    demo(project, bob, "q1", ms=10_000)
    demo(project, bob, "q2", state=ReviewState.PENDING, needs_review=True, ms=30_000, day=TODAY - dt.timedelta(days=1))
    demo(project, charlie, "q3", state=ReviewState.REJECTED, ms=20_000)
    p4 = labels.prompt(project, "q4")
    Assignment.objects.create(project=project, prompt=p4, kind=TaskKind.DEMONSTRATION, user=charlie,
                              expires_at=timezone.now() + dt.timedelta(minutes=30))
    return project


def test_items_per_state_count_label_slots(filled, bob):
    states = item_states(filled)["Demonstrations"]
    # 4 prompts x 2 labels = 8 slots; done 1 + in review 1 + in progress 1 fill 3; the rejected slot is open again
    assert states == {"to do": 5, "in progress": 1, "in review": 1, "done": 1, "rejected": 1}
    only_bob = item_states(filled, Filters(start=TODAY, end=TODAY, labeler_id=bob.pk))["Demonstrations"]
    assert only_bob["done"] == 1 and only_bob["rejected"] == 0 and only_bob["in progress"] == 0
    assert only_bob["to do"] == 5, "what is left is the project's, whoever is filtered"


def test_ranking_slots_need_k_completions(project, bob):
    project.completions_per_prompt = 2
    project.save()
    labels.ranked(project, bob, "ranked", ["a", "b"], [[0], [1]])
    labels.prompt(project, "no completions yet")
    assert item_states(project)["Rankings"]["to do"] == 0 and item_states(project)["Rankings"]["done"] == 1


def test_labels_per_day_and_the_labeler_filter(filled, bob):
    days, series = labels_per_day(filled, Filters(start=TODAY - dt.timedelta(days=2), end=TODAY))
    assert days == [TODAY - dt.timedelta(days=2), TODAY - dt.timedelta(days=1), TODAY]
    assert series["Demonstrations"] == [0, 1, 2] and series["Rankings"] == [0, 0, 0]
    _, only_bob = labels_per_day(filled, Filters(start=TODAY, end=TODAY, labeler_id=bob.pk))
    assert only_bob["Demonstrations"] == [1]


def test_median_time_per_item(filled):
    # 10 s, 30 s, 20 s -> median 20 s; labels with no timing are left out
    demo(filled, filled.created_by, "untimed", ms=0)
    assert median_seconds(filled, Filters(start=TODAY - dt.timedelta(days=5), end=TODAY))["Demonstrations"] == 20.0
    # two labels in the window: the mean of the middle two
    assert median_seconds(filled, Filters(start=TODAY, end=TODAY))["Demonstrations"] == 15.0


def test_queue_eta_at_the_recent_pace(filled):
    now = at(TODAY, 18)
    data = project_dashboard(filled, Filters(start=TODAY - dt.timedelta(days=6), end=TODAY), now=now)
    eta = data["eta"]["Demonstrations"]
    # 3 demonstrations in the 7 days before now -> 3/7 a day; 5 open slots -> 5 / (3/7) = 11.7 days
    assert eta["left"] == 5 and eta["per_day"] == pytest.approx(3 / 7)
    assert eta["days"] == pytest.approx(5 / (3 / 7))
    assert data["active_labelers"] == 2


def test_the_dashboard_page_shows_the_figures_and_a_table_under_each_chart(client, filled, alice):
    client.force_login(alice)
    page = client.get(f"/projects/{filled.slug}/dashboard/?start=2026-11-18&end=2026-11-20").content.decode()
    assert 'data-stat="labels"><div class="value">3<' in page
    assert 'data-stat="median-demonstrations"><div class="value">20 s<' in page
    assert 'canvas data-chart="chart-states"' in page and 'id="chart-states-data"' in page
    assert "<td>to do</td><td class=\"num\">5</td>" in page, "the numbers are in a table for readers without JS"
    assert 'data-labeler="bob"' in page and "vendor/chartjs/chart.umd.min.js" in page
    filtered = client.get(f"/projects/{filled.slug}/dashboard/?start=2026-11-18&end=2026-11-20&labeler={filled.created_by.pk}")
    assert 'data-stat="labels"><div class="value">0<' in filtered.content.decode()
    assert client.get(f"/projects/{filled.slug}/dashboard/?start=2026-11-20&end=2026-11-01").status_code == 400


@pytest.mark.parametrize("path", ["dashboard/", "dashboard/quality/", "dashboard/training/"])
def test_dashboards_are_for_the_projects_managers_only(client, project, other_project, alice, bob, eve, path):
    client.force_login(alice)
    assert client.get(f"/projects/{project.slug}/{path}").status_code == 200
    assert client.get(f"/projects/{other_project.slug}/{path}").status_code == 404, "another project's dashboard"
    client.force_login(eve)
    assert client.get(f"/projects/{project.slug}/{path}").status_code == 404
    client.force_login(bob)
    assert client.get(f"/projects/{project.slug}/{path}").status_code == 404, "labelers do not see dashboards"


def test_the_query_count_does_not_grow_with_the_labels(client, project, alice, bob, django_assert_max_num_queries):
    client.force_login(alice)
    for i in range(3):
        demo(project, bob, f"few {i}", day=timezone.localdate())
    with django_assert_max_num_queries(40) as few:
        client.get(f"/projects/{project.slug}/dashboard/")
    for i in range(60):
        demo(project, bob, f"many {i}", day=timezone.localdate())
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(f"/projects/{project.slug}/dashboard/")


def test_the_quality_page_shows_agreement_and_flags_gold_misses(client, project, alice, bob, charlie):
    first = labels.ranked(project, bob, "shared", ["a", "b", "c", "d"], [[0], [1], [2], [3]])
    ids = [c.pk for c in first.prompt.completions.order_by("id")]
    Ranking.objects.create(prompt=first.prompt, author=charlie, order=[[ids[1]], [ids[0]], [ids[2]], [ids[3]]],
                           flags={str(ids[3]): ["unsafe"]})
    gold = labels.prompt(project, "gold", is_gold=True)
    g = [gold.completions.create(text=t).pk for t in "xyz"]
    Prompt.objects.filter(pk=gold.pk).update(gold_answer={"ranking": [[g[0]], [g[1]], [g[2]]]})
    Ranking.objects.create(prompt=gold, author=charlie, order=[[g[2]], [g[1]], [g[0]]])
    client.force_login(alice)
    page = client.get(f"/projects/{project.slug}/dashboard/quality/").content.decode()
    # one swap in 4 completions: agreement 5/6 = 0.833, tau 4/6 = 0.667
    assert 'data-stat="agreement"><div class="value">0.833<' in page
    assert 'data-stat="tau"><div class="value">0.667<' in page
    charlie_row = page[page.index('data-labeler="charlie"'):]
    assert 'class="flagged"' in charlie_row[:40] and "below gold threshold" in charlie_row.split("</tr>")[0]
    assert 'data-flag="unsafe"><td>unsafe</td><td class="num">4</td><td class="num">1</td><td class="num">0.750' in page
