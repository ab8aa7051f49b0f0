"""Dashboard load time with 100k labels in the database, as a ratio against a plain list page.

Builds a throw-away SQLite database (migrated from scratch in a temp folder), bulk-creates one
project with 20 labelers, ``--prompts`` prompts with K=4 completions each, and ``--labels`` labels
(80 % rankings, two or three per prompt, 20 % demonstrations) spread over 60 days, plus a finished
SFT run of 2,000 logged steps. Then it times full GET requests through Django's test client
(middleware, templates, queries) for:

- ``runs list`` (baseline): the project's runs page, a plain list;
- ``dashboard``: the project dashboard (items per state, labels per day, labelers, medians, ETA);
- ``dashboard, one labeler``: the same with the labeler filter;
- ``quality``: agreement, consensus and gold (reads the latest 1,000 multiply-labelled prompts);
- ``training dashboard``: a run's curves and the lineage.

Run: OMP_NUM_THREADS=1 .venv/bin/python bench/dashboard_load.py [--labels 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def setup_django(data_dir: str) -> None:
    os.environ["TUNELOOP_DATA_DIR"] = data_dir
    os.environ["TUNELOOP_EMBEDDED"] = "1"
    os.environ.pop("DATABASE_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    django.setup()
    setup_test_environment()
    call_command("migrate", verbosity=0)


def seed(n_labels: int, n_prompts: int, rng: random.Random):
    from django.contrib.auth import get_user_model

    from annotation.models import Completion, Demonstration, Membership, Project, Prompt, Ranking, Role
    from training.models import RunKind, RunStatus, TrainingRun

    users = get_user_model().objects
    alice = users.create_user("alice", password="x")
    project = Project.objects.create(name="Bench", slug="bench", completions_per_prompt=4, labels_per_item=3,
                                     created_by=alice)
    Membership.objects.create(project=project, user=alice, role=Role.MANAGER)
    labelers = users.bulk_create([get_user_model()(username=f"labeler{i:02d}") for i in range(20)])
    Membership.objects.bulk_create([Membership(project=project, user=u, role=Role.LABELER) for u in labelers])
    Prompt.objects.bulk_create([
        Prompt(project=project, messages=[{"role": "user", "content": f"Question {i}?"}], normalized_hash=f"{i:064x}")
        for i in range(n_prompts)
    ], batch_size=5000)
    prompt_ids = list(Prompt.objects.filter(project=project).values_list("id", flat=True))
    Completion.objects.bulk_create([Completion(prompt_id=p, text=f"answer {k}") for p in prompt_ids for k in range(4)],
                                   batch_size=10000)
    completions: dict[int, list[int]] = {}
    for cid, pid in Completion.objects.values_list("id", "prompt_id").iterator(chunk_size=10000):
        completions.setdefault(pid, []).append(cid)
    now = dt.datetime.now(dt.UTC)
    states = ["approved"] * 7 + ["pending", "rejected"]

    def when() -> dt.datetime:
        return now - dt.timedelta(days=rng.random() * 60)

    n_rankings = int(n_labels * 0.8)
    rankings, made = [], 0
    for pid in prompt_ids:
        for user in rng.sample(labelers, rng.choice((2, 3))):
            if made == n_rankings:
                break
            order = list(completions[pid])
            rng.shuffle(order)
            state = rng.choice(states)
            rankings.append(Ranking(prompt_id=pid, author=user, order=[[c] for c in order], review_state=state,
                                    needs_review=state != "approved", time_spent_ms=rng.randint(10_000, 120_000),
                                    flags={str(order[-1]): ["unsafe"]} if rng.random() < 0.05 else {}))
            made += 1
    Ranking.objects.bulk_create(rankings, batch_size=5000)
    Demonstration.objects.bulk_create([
        Demonstration(prompt_id=rng.choice(prompt_ids), author=rng.choice(labelers), content="An answer.",
                      review_state=rng.choice(states), time_spent_ms=rng.randint(30_000, 300_000))
        for _ in range(n_labels - n_rankings)
    ], batch_size=5000)
    for model in (Ranking, Demonstration):  # auto_now_add set "now": spread the labels over 60 days
        ids = list(model.objects.values_list("id", flat=True))
        model.objects.bulk_update([model(id=i, created_at=when()) for i in ids], ["created_at"], batch_size=5000)
    TrainingRun.objects.create(project=project, kind=RunKind.SFT, status=RunStatus.SUCCEEDED, progress=1.0,
                               step=2000, total_steps=2000,
                               metrics=[{"step": s, "loss": 3 / s ** 0.3, **({"eval_loss": 3.1 / s ** 0.3}
                                                                           if s % 50 == 0 else {})}
                                        for s in range(1, 2001)])
    return project, alice, labelers


def time_page(client, url: str, repeat: int) -> tuple[float, float]:
    """Median wall-clock and CPU milliseconds of a GET (CPU time: fairer on a machine shared with other jobs)."""
    response = client.get(url)  # warm-up: template loading, first queries
    assert response.status_code == 200, (url, response.status_code)
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        client.get(url)
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=100_000)
    parser.add_argument("--prompts", type=int, default=40_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--data-dir", help="keep the seeded database here and reuse it on the next run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tuneloop-bench-") as scratch:
        setup_django(args.data_dir or scratch)
        from django.db import connection
        from django.test import Client

        from annotation.models import Demonstration, Membership, Project, Ranking

        began = time.perf_counter()
        project = Project.objects.filter(slug="bench").first()
        if project is None:
            project, alice, labelers = seed(args.labels, args.prompts, random.Random(0))
        else:
            alice = project.created_by
            labelers = [m.user for m in Membership.objects.filter(project=project, role="labeler").order_by("id")]
        labels = Ranking.objects.count() + Demonstration.objects.count()
        print(f"{labels} labels ({Ranking.objects.count()} rankings) on {args.prompts} prompts "
              f"(seeded or reopened in {time.perf_counter() - began:.1f}s); database {connection.vendor}; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        client = Client()
        client.force_login(alice)
        base = f"/projects/{project.slug}"
        pages = [
            ("runs list (baseline)", f"{base}/runs/"),
            ("dashboard", f"{base}/dashboard/"),
            ("dashboard, one labeler", f"{base}/dashboard/?labeler={labelers[0].pk}"),
            ("dashboard, 60 days", f"{base}/dashboard/?start={(dt.date.today() - dt.timedelta(days=59))}"
                                   f"&end={dt.date.today()}"),
            ("quality", f"{base}/dashboard/quality/"),
            ("training dashboard", f"{base}/dashboard/training/"),
        ]
        baseline = None
        print(f"{'page':26} {'wall ms':>8} {'cpu ms':>8} {'x baseline (cpu)':>17}")
        for name, url in pages:
            wall, cpu = time_page(client, url, args.repeat)
            baseline = baseline or cpu
            print(f"{name:26} {wall:8.1f} {cpu:8.1f} {cpu / baseline:17.2f}")


if __name__ == "__main__":
    main()
