"""Reads for the project dashboard: progress, pace and labelers, as aggregate queries.

Every figure is a ``COUNT``/``AVG`` grouped in the database (or a median read with one ``OFFSET``), so
the page costs a fixed number of queries whatever the label count: nothing here walks label rows
in Python. The caller has already passed ``project_for_user``; these only look inside ``project``.

States of a task kind (demonstrations, rankings), counted in label slots:

- *done*: approved, or submitted and not sampled for review (what training uses);
- *in review*: sampled for review and still waiting;
- *rejected*: a reviewer rejected it (its slot went back to the queue);
- *in progress*: a live lease (leased, not expired);
- *to do*: the slots still open: ``labels_per_item`` per eligible non-gold prompt (for rankings, one
  with K completions) minus the done, in-review and in-progress ones.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from django.db import connection
from django.db.models import CharField, Count, F, Func, Max, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from annotation.models import (
    Assignment,
    AssignmentStatus,
    Demonstration,
    Prompt,
    Ranking,
    ReviewState,
    TaskKind,
)

DEFAULT_DAYS = 30
PACE_DAYS = 7
KINDS = ((TaskKind.DEMONSTRATION, Demonstration, "Demonstrations"), (TaskKind.RANKING, Ranking, "Rankings"))
STATES = ("to do", "in progress", "in review", "done", "rejected")

DONE = Q(review_state=ReviewState.APPROVED) | Q(review_state=ReviewState.PENDING, needs_review=False)
IN_REVIEW = Q(review_state=ReviewState.PENDING, needs_review=True)
REJECTED = Q(review_state=ReviewState.REJECTED)


@dataclass
class Filters:
    """The dashboard's window: days ``start``..``end`` inclusive (local dates) and optionally one labeler."""

    start: dt.date
    end: dt.date
    labeler_id: int | None = None

    @classmethod
    def default(cls, *, today: dt.date | None = None, labeler_id: int | None = None) -> Filters:
        today = today or timezone.localdate()
        return cls(start=today - dt.timedelta(days=DEFAULT_DAYS - 1), end=today, labeler_id=labeler_id)

    def bounds(self) -> tuple[dt.datetime, dt.datetime]:
        tz = timezone.get_current_timezone()
        begin = dt.datetime.combine(self.start, dt.time.min, tzinfo=tz)
        return begin, dt.datetime.combine(self.end + dt.timedelta(days=1), dt.time.min, tzinfo=tz)


def fmt(value) -> str:
    """A table cell: floats to 4 significant digits, None as a dash."""
    if value is None:
        return "\N{EN DASH}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def chart(*, chart_id: str, title: str, kind: str, labels: list, series: dict[str, list], x_label: str = "",
          y_label: str = "", table_rows: int = 0) -> dict:
    """A chart for ``static/js/charts.js`` (Chart.js) and the table of the same numbers printed under it.

    ``table_rows`` > 0 thins a long table to about that many evenly spaced rows (the last always kept);
    the chart itself gets every point.
    """
    labels = [str(label) for label in labels]
    index = list(range(len(labels)))
    if table_rows and len(index) > table_rows:
        stride = -(-len(index) // table_rows)
        index = sorted({*index[::stride], index[-1]})
    return {
        "id": chart_id, "title": title, "type": kind, "labels": labels, "x_label": x_label, "y_label": y_label,
        "datasets": [{"label": name, "data": values} for name, values in series.items()],
        "columns": [x_label, *series], "rows": [[labels[i], *(fmt(v[i]) for v in series.values())] for i in index],
        "thinned": len(index) < len(labels),
    }


def _labels(model, project, filters: Filters | None, *, windowed: bool):
    qs = model.objects.filter(prompt__project=project)
    if filters is not None:
        if filters.labeler_id:
            qs = qs.filter(author_id=filters.labeler_id)
        if windowed:
            begin, end = filters.bounds()
            qs = qs.filter(created_at__gte=begin, created_at__lt=end)
    return qs


def _capacity(project, kind: str) -> int:
    prompts = Prompt.objects.filter(project=project, is_gold=False)
    if kind == TaskKind.RANKING:
        prompts = prompts.annotate(n=Count("completions")).filter(n__gte=project.completions_per_prompt)
    return prompts.count() * project.labels_per_item


def kind_totals(project, filters: Filters | None = None, *, now=None) -> dict[str, dict]:
    """Per kind, in one pass over its labels: states, open slots, the recent pace and the timed labels in the window.

    ``done``/``in review``/``rejected``/``in progress`` honour the labeler filter; ``to do`` and the pace
    are the project's (what is left does not depend on who is looked at).
    """
    now = now or timezone.now()
    mine = Q(author_id=filters.labeler_id) if filters is not None and filters.labeler_id else Q()
    window = Q()
    if filters is not None:
        begin, end = filters.bounds()
        window = Q(created_at__gte=begin, created_at__lt=end)
    result = {}
    for kind, model, title in KINDS:
        counts = model.objects.filter(prompt__project=project).aggregate(
            done=Count("id", filter=DONE & mine), in_review=Count("id", filter=IN_REVIEW & mine),
            rejected=Count("id", filter=REJECTED & mine),
            filled=Count("id", filter=(DONE | IN_REVIEW) & Q(prompt__is_gold=False)),
            recent=Count("id", filter=Q(created_at__gte=now - dt.timedelta(days=PACE_DAYS))),
            timed=Count("id", filter=window & mine & Q(time_spent_ms__gt=0)),
        )
        live = Assignment.objects.filter(project=project, kind=kind, status=AssignmentStatus.LEASED, expires_at__gt=now)
        leases = live.aggregate(all=Count("id", filter=Q(prompt__is_gold=False)),
                                mine=Count("id", filter=Q(user_id=filters.labeler_id) if mine else Q()))
        result[title] = {
            "states": {
                "to do": max(0, _capacity(project, kind) - counts["filled"] - leases["all"]),
                "in progress": leases["mine"],
                "in review": counts["in_review"], "done": counts["done"], "rejected": counts["rejected"],
            },
            "recent": counts["recent"], "timed": counts["timed"],
        }
    return result


def item_states(project, filters: Filters | None = None, *, now=None) -> dict[str, dict[str, int]]:
    """``{kind label: {state: count}}`` (see ``kind_totals``)."""
    return {title: totals["states"] for title, totals in kind_totals(project, filters, now=now).items()}


def _day():
    """The label's day: SQLite's native ``date()`` when days are UTC days (Django's ``TruncDate`` calls a
    Python function per row there, the slowest part of the page at 100k labels), ``TruncDate`` elsewhere."""
    if connection.vendor == "sqlite" and timezone.get_current_timezone_name() == "UTC":
        return Func(F("created_at"), function="date", output_field=CharField())
    return TruncDate("created_at")


def window_activity(project, filters: Filters) -> dict[str, list[dict]]:
    """Per kind, the window's labels grouped by (labeler, day): one scan that feeds both the labels-per-day
    chart and the labelers table. At most labelers x days rows, whatever the label count."""
    result = {}
    for _, model, title in KINDS:
        result[title] = list(
            _labels(model, project, filters, windowed=True).annotate(day=_day())
            .values("author_id", "day")
            .annotate(n=Count("id"), timed=Count("id", filter=Q(time_spent_ms__gt=0)),
                      ms=Sum("time_spent_ms", filter=Q(time_spent_ms__gt=0)),
                      rejected=Count("id", filter=REJECTED), last=Max("created_at"))
            .order_by()
        )
    return result


def labels_per_day(project, filters: Filters, *, activity: dict | None = None
                   ) -> tuple[list[dt.date], dict[str, list[int]]]:
    """Every day of the window with the labels submitted that day, per kind (zeros included)."""
    activity = activity if activity is not None else window_activity(project, filters)
    days = [filters.start + dt.timedelta(days=i) for i in range((filters.end - filters.start).days + 1)]
    series = {}
    for title, rows in activity.items():
        by_day: dict[dt.date, int] = defaultdict(int)
        for row in rows:
            by_day[dt.date.fromisoformat(str(row["day"])[:10])] += row["n"]
        series[title] = [by_day.get(day, 0) for day in days]
    return days, series


def median(qs, field: str, *, count: int | None = None) -> float | None:
    """The median of ``field`` over ``qs`` with an ordered slice (plus a count unless given), on any database."""
    n = qs.count() if count is None else count
    if not n:
        return None
    middle = list(qs.order_by(field).values_list(field, flat=True)[(n - 1) // 2: n // 2 + 1])
    return sum(middle) / len(middle)


def median_seconds(project, filters: Filters, *, counts: dict[str, int] | None = None) -> dict[str, float | None]:
    """Median time spent per submitted label of each kind in the window (labels with no timing left out)."""
    result = {}
    for _, model, title in KINDS:
        timed = _labels(model, project, filters, windowed=True).filter(time_spent_ms__gt=0)
        ms = median(timed, "time_spent_ms", count=(counts or {}).get(title))
        result[title] = None if ms is None else ms / 1000
    return result


def labelers(project, filters: Filters, *, activity: dict | None = None) -> list[dict]:
    """Labelers with labels in the window: counts per kind (``demonstrations``, ``rankings``), mean seconds per
    label (``<kind>_seconds``), rejected labels and last activity."""
    from django.contrib.auth import get_user_model

    activity = activity if activity is not None else window_activity(project, filters)
    table: dict[int, dict] = {}
    timing: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0])
    for title, rows in activity.items():
        key = title.lower()
        for row in rows:
            entry = table.setdefault(row["author_id"], {
                "user_id": row["author_id"], "total": 0, "rejected": 0, "last": row["last"],
                "demonstrations": 0, "rankings": 0, "demonstrations_seconds": None, "rankings_seconds": None,
            })
            entry[key] += row["n"]
            entry["total"] += row["n"]
            entry["rejected"] += row["rejected"]
            entry["last"] = max(entry["last"], row["last"])
            timing[(row["author_id"], key)][0] += row["ms"] or 0
            timing[(row["author_id"], key)][1] += row["timed"]
    for (user_id, key), (ms, timed) in timing.items():
        table[user_id][f"{key}_seconds"] = ms / timed / 1000 if timed else None
    names = dict(get_user_model().objects.filter(pk__in=list(table)).values_list("pk", "username"))
    for user_id, entry in table.items():
        entry["username"] = names.get(user_id, f"user {user_id}")
    return sorted(table.values(), key=lambda e: (-e["total"], e["username"]))


def queue_eta(totals: dict[str, dict]) -> dict[str, dict]:
    """Per kind: labels a day over the last ``PACE_DAYS`` days and the days the open slots need at that pace."""
    result = {}
    for title, kind in totals.items():
        pace = kind["recent"] / PACE_DAYS
        left = kind["states"]["to do"]
        result[title] = {"per_day": pace, "left": left, "days": (left / pace) if pace else None,
                         "text": eta_text((left / pace) if pace else None, left)}
    return result


def eta_text(days: float | None, left: int) -> str:
    if left == 0:
        return "nothing left"
    if days is None:
        return "no recent labels to extrapolate from"
    hours = days * 24
    if hours < 1:
        return "under an hour"
    if hours < 48:
        return f"about {round(hours)} hours"
    return f"about {round(days)} days"


def project_dashboard(project, filters: Filters, *, now=None) -> dict:
    """Everything the dashboard page shows, charts with their tables included."""
    totals = kind_totals(project, filters, now=now)
    states = {title: kind["states"] for title, kind in totals.items()}
    activity = window_activity(project, filters)
    days, per_day = labels_per_day(project, filters, activity=activity)
    people = labelers(project, filters, activity=activity)
    eta = queue_eta(totals)
    return {
        "states": states,
        "states_chart": chart(chart_id="chart-states", title="Items per state", kind="bar", labels=list(STATES),
                              series={k: [v[s] for s in STATES] for k, v in states.items()}, x_label="State",
                              y_label="Labels"),
        "days_chart": chart(chart_id="chart-days", title="Labels per day", kind="line",
                            labels=[d.isoformat() for d in days], series=per_day, x_label="Day", y_label="Labels"),
        "labels_in_window": sum(sum(v) for v in per_day.values()),
        "active_labelers": len(people),
        "labelers": people,
        "median_seconds": median_seconds(project, filters, counts={t: k["timed"] for t, k in totals.items()}),
        "eta": eta,
    }
