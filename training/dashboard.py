"""Reads for the training dashboard: live run curves, versions along a lineage, chat outcomes per version.

Curves come from ``TrainingRun.metrics`` (one dict per logged step, written by
``runs.run_record_progress``: ``{"step", "time", <metric>: value, ...}``). Version figures come from
``ModelVersion.metrics`` (the stage's result: SFT ``eval_loss``, reward ``eval_accuracy``, PPO
``initial_reward``/``final_reward``/``final_kl``). Chat outcomes are read-only aggregates over the
serving app's messages and feedback, grouped by the deployed policy version.
"""

from __future__ import annotations

from django.db.models import Count, Q

from annotation.dashboard import chart, fmt
from training.models import ModelVersion, RunKind, RunStatus, TrainingRun, VersionKind
from training.selectors import lineage_of, runs_of, versions_of

CURVE_KINDS = (RunKind.SFT, RunKind.REWARD, RunKind.PPO, RunKind.PRETRAIN, RunKind.MODERATION, RunKind.SMOKE)
CURVES = (
    ("loss", "Loss", ("loss", "eval_loss")),
    ("accuracy", "Reward-model accuracy", ("batch_accuracy", "eval_accuracy")),
    ("reward", "PPO reward", ("reward",)),
    ("kl", "KL to the reference (nats per answer)", ("kl",)),
    ("entropy", "Policy entropy", ("entropy",)),
    ("clip", "PPO clip fraction", ("clip_fraction",)),
)
NAMES = {"loss": "training loss", "eval_loss": "eval loss", "batch_accuracy": "batch accuracy",
         "eval_accuracy": "held-out pairwise accuracy", "reward": "mean reward", "kl": "KL",
         "entropy": "entropy", "clip_fraction": "clip fraction"}
MAX_POINTS = 500
TABLE_ROWS = 40


def curve_runs(project) -> list[TrainingRun]:
    return list(runs_of(project).filter(kind__in=CURVE_KINDS).exclude(status=RunStatus.QUEUED)[:50])


def chosen_run(project, run_id) -> TrainingRun | None:
    """The asked-for run of this project, else the running one, else the latest with metrics."""
    runs = runs_of(project).filter(kind__in=CURVE_KINDS)
    if run_id:
        return runs.filter(pk=run_id).first()
    return runs.filter(status=RunStatus.RUNNING).first() or runs.exclude(metrics=[]).first()


def _thin(points: list[dict]) -> list[dict]:
    if len(points) <= MAX_POINTS:
        return points
    stride = -(-len(points) // MAX_POINTS)
    return [*points[:-1:stride], points[-1]]


def run_curves(run: TrainingRun) -> list[dict]:
    """One chart per curve family the run logged (loss, accuracy, reward, KL, entropy, clip fraction)."""
    points = _thin([p for p in (run.metrics or []) if isinstance(p, dict)])
    steps = [p.get("step", i + 1) for i, p in enumerate(points)]
    charts = []
    for key, title, metrics in CURVES:
        series = {NAMES[m]: [p.get(m) for p in points] for m in metrics if any(p.get(m) is not None for p in points)}
        if series:
            charts.append(chart(chart_id=f"run-{run.pk}-{key}", title=title, kind="line", labels=steps, series=series,
                                x_label="Step", table_rows=TABLE_ROWS))
    return charts


def default_version(project, name: str | None) -> ModelVersion | None:
    """The named version, else the newest policy; the shared base counts (a lineage starts there)."""
    versions = versions_of(project, kind=VersionKind.POLICY)
    if name:
        return ModelVersion.objects.filter(Q(project=project) | Q(project__isnull=True), name=name).first()
    return versions.first()


def _accuracy(version: ModelVersion | None):
    return (version.metrics or {}).get("eval_accuracy") if version else None


def lineage_comparison(version: ModelVersion, chat: dict[int, dict]) -> dict:
    """The version's ancestry, oldest first, with what each step changed, and a chart of reward and accuracy."""
    rows = []
    for node in reversed(lineage_of(version)):
        metrics = node.version.metrics or {}
        rm = node.version if node.version.kind == VersionKind.REWARD else node.reward_version
        outcome = chat.get(node.version.pk, {})
        rows.append({
            "name": node.version.name, "kind": node.version.kind, "run": node.run,
            "run_kind": node.run.kind if node.run else "", "snapshot": node.snapshot,
            "eval_loss": metrics.get("eval_loss"), "rm": rm.name if rm else "", "rm_accuracy": _accuracy(rm),
            "initial_reward": metrics.get("initial_reward"), "final_reward": metrics.get("final_reward"),
            "final_kl": metrics.get("final_kl"), "thumbs_up_rate": outcome.get("thumbs_up_rate"),
        })
    series = {"PPO reward at start": [r["initial_reward"] for r in rows],
              "PPO reward at end": [r["final_reward"] for r in rows],
              "RM accuracy of its reward model": [r["rm_accuracy"] for r in rows]}
    if all(value is None for values in series.values() for value in values):
        return {"rows": rows, "chart": None}  # nothing to draw yet: the page says what will appear, and when
    figure = chart(
        chart_id="lineage", title=f"Along the lineage of {version.name}", kind="bar", x_label="Version",
        labels=[r["name"] for r in rows], series=series,
    )
    return {"rows": rows, "chart": figure}


def reward_models(project) -> dict | None:
    """Held-out pairwise accuracy of every reward model of the project, in the order they were made."""
    versions = list(ModelVersion.objects.filter(project=project, kind=VersionKind.REWARD).order_by("created_at", "id"))
    if not versions:
        return None
    return chart(chart_id="reward-models", title="Reward models: held-out pairwise accuracy", kind="bar",
                 x_label="Reward model", labels=[v.name for v in versions],
                 series={"accuracy": [_accuracy(v) for v in versions],
                         "accuracy before training": [(v.metrics or {}).get("eval_accuracy_initial") for v in versions]})


def chat_outcomes(project) -> list[dict]:
    """Per deployed policy version: answers, thumbs up/down, thumbs-up rate, template (moderated) answers and rate."""
    from serving.models import Deployment, Feedback, Message, ModerationEvent

    deployed = list(
        Deployment.objects.filter(project=project).values("policy_id", "policy__name")
        .annotate(active=Count("id", filter=Q(is_active=True))).order_by("policy_id")
    )
    answers = {
        row["deployment__policy_id"]: row for row in
        Message.objects.filter(deployment__project=project, role="assistant").values("deployment__policy_id")
        .annotate(n=Count("id"), moderated=Count("id", filter=Q(is_template=True))).order_by()
    }
    thumbs = {
        row["message__deployment__policy_id"]: row for row in
        Feedback.objects.filter(message__deployment__project=project).values("message__deployment__policy_id")
        .annotate(up=Count("id", filter=Q(kind="up")), down=Count("id", filter=Q(kind="down")),
                  reports=Count("id", filter=Q(kind="report"))).order_by()
    }
    events = dict(
        ModerationEvent.objects.filter(project=project, message__deployment__isnull=False)
        .values("message__deployment__policy_id").annotate(n=Count("id")).order_by()
        .values_list("message__deployment__policy_id", "n")
    )
    result = []
    for row in deployed:
        pid = row["policy_id"]
        a, t = answers.get(pid, {}), thumbs.get(pid, {})
        n, up, down = a.get("n", 0), t.get("up", 0), t.get("down", 0)
        result.append({
            "policy_id": pid, "name": row["policy__name"], "active": bool(row["active"]), "answers": n,
            "up": up, "down": down, "reports": t.get("reports", 0),
            "thumbs_up_rate": up / (up + down) if up + down else None,
            "moderated": a.get("moderated", 0), "moderation_rate": a.get("moderated", 0) / n if n else None,
            "events": events.get(pid, 0),
        })
    return result


def chat_chart(outcomes: list[dict]) -> dict | None:
    if not outcomes:
        return None
    return chart(chart_id="chat", title="Thumbs-up and moderation rate per version", kind="bar", x_label="Policy version",
                 labels=[o["name"] for o in outcomes],
                 series={"thumbs-up rate": [o["thumbs_up_rate"] for o in outcomes],
                         "moderation rate": [o["moderation_rate"] for o in outcomes]})


def training_dashboard(project, *, run_id=None, version_name: str | None = None) -> dict:
    run = chosen_run(project, run_id)
    version = default_version(project, version_name)
    outcomes = chat_outcomes(project)
    by_version = {o["policy_id"]: o for o in outcomes}
    return {
        "runs": curve_runs(project), "run": run, "curves": run_curves(run) if run else [],
        "live": bool(run and run.status == RunStatus.RUNNING),
        "versions": versions_of(project, kind=VersionKind.POLICY),
        "version": version, "lineage": lineage_comparison(version, by_version) if version else None,
        "reward_chart": reward_models(project), "chat": outcomes, "chat_chart": chat_chart(outcomes),
        "fmt": fmt,
    }
