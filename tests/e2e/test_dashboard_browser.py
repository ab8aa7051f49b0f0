"""alice opens the project dashboard, the label-quality page and the training dashboard of a busy project.

The data is made with the ORM (a month of labels by four labelers, gold items, an SFT -> reward -> PPO
lineage with its curves, two deployed versions with chat feedback); the screenshots in
``docs/screenshots/`` are the ones the docs show.
"""

import datetime as dt
import math
import random
from pathlib import Path

import pytest
from django.utils import timezone

from annotation.models import (
    Assignment,
    Completion,
    Demonstration,
    Membership,
    Prompt,
    Ranking,
    Role,
    TaskKind,
)
from annotation.prompt_text import normalized_hash
from tests.e2e.shots import SHOTS, wait_until
from training.models import ModelVersion, RunKind, RunStatus, TrainingRun, VersionKind

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]


@pytest.fixture
def browser(monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


def _prompt(project, text, **fields):
    messages = [{"role": "user", "content": text}]
    return Prompt.objects.create(project=project, messages=messages, normalized_hash=normalized_hash(messages),
                                 **fields)


def seed_labels(project, people, rng):
    """30 days of demonstrations and rankings; labelers mostly agree, one of them (frank) is careless."""
    now = timezone.now()
    project.labels_per_item = 2
    project.save()
    for day in range(30):
        when = now - dt.timedelta(days=29 - day, hours=rng.randint(0, 6))
        for i in range(2 + day // 6):
            prompt = _prompt(project, f"Question {day}-{i}: how do I {rng.choice(['boil', 'fold', 'sort'])} it?")
            ids = [Completion.objects.create(prompt=prompt, text=f"answer {k}").pk for k in range(4)]
            for person in rng.sample(people, 2):
                order = list(ids)
                if person.username == "frank":
                    rng.shuffle(order)
                elif rng.random() < 0.3:
                    a = rng.randrange(3)
                    order[a], order[a + 1] = order[a + 1], order[a]
                flags = {str(ids[3]): ["unsafe"]} if i == 0 and rng.random() < 0.5 else {}
                state = rng.choice(["approved"] * 6 + ["pending", "rejected"])
                r = Ranking.objects.create(prompt=prompt, author=person, order=[[c] for c in order], flags=flags,
                                           review_state=state, needs_review=state != "approved",
                                           time_spent_ms=rng.randint(20_000, 90_000))
                Ranking.objects.filter(pk=r.pk).update(created_at=when)
            d = Demonstration.objects.create(prompt=prompt, author=rng.choice(people), content="An answer.",
                                             review_state="approved", time_spent_ms=rng.randint(60_000, 240_000))
            Demonstration.objects.filter(pk=d.pk).update(created_at=when)
    for n in range(12):
        _prompt(project, f"Still waiting {n}")
    waiting = Prompt.objects.filter(project=project, rankings__isnull=True).first()
    Assignment.objects.create(project=project, prompt=waiting, kind=TaskKind.DEMONSTRATION, user=people[0],
                              expires_at=now + dt.timedelta(minutes=20))
    for g in range(3):
        gold = _prompt(project, f"Gold item {g}", is_gold=True)
        ids = [Completion.objects.create(prompt=gold, text=f"gold {k}").pk for k in range(4)]
        Prompt.objects.filter(pk=gold.pk).update(gold_answer={"ranking": [[c] for c in ids]})
        for person in people:
            order = list(ids) if person.username != "frank" else list(reversed(ids))
            Ranking.objects.create(prompt=gold, author=person, order=[[c] for c in order], review_state="approved")


def seed_training(project, alice, rng):
    base = ModelVersion.objects.create(name="smollm2-base", kind=VersionKind.POLICY, project=project, path="base")
    sft_points = []
    for step in range(1, 81):
        point = {"step": step, "loss": round(2.6 * math.exp(-step / 30) + 0.9 + rng.uniform(-0.08, 0.08), 4)}
        if step % 10 == 0:
            point["eval_loss"] = round(2.5 * math.exp(-step / 35) + 1.05, 4)
        sft_points.append(point)
    sft_run = TrainingRun.objects.create(project=project, kind=RunKind.SFT, status=RunStatus.SUCCEEDED, progress=1,
                                         step=80, total_steps=80, metrics=sft_points, parent_version=base)
    sft = ModelVersion.objects.create(name="assistant-sft-1", kind=VersionKind.POLICY, project=project, path="s",
                                      parent=base, run=sft_run, metrics={"eval_loss": sft_points[-1]["eval_loss"]})
    rm_points = [{"step": s, "loss": round(0.69 - 0.25 * (1 - math.exp(-s / 15)) + rng.uniform(-0.04, 0.04), 4),
                  "batch_accuracy": round(min(1, 0.5 + 0.3 * (1 - math.exp(-s / 12)) + rng.uniform(-0.1, 0.1)), 3)}
                 for s in range(1, 41)]
    for s, acc in ((20, 0.66), (40, 0.74)):
        rm_points[s - 1]["eval_accuracy"] = acc
    rm_run = TrainingRun.objects.create(project=project, kind=RunKind.REWARD, status=RunStatus.SUCCEEDED, progress=1,
                                        step=40, total_steps=40, metrics=rm_points, parent_version=sft)
    rm = ModelVersion.objects.create(name="assistant-rm-1", kind=VersionKind.REWARD, project=project, path="r",
                                     parent=sft, run=rm_run, metrics={"eval_accuracy": 0.74,
                                                                      "eval_accuracy_initial": 0.52})
    ppo_points = [{"step": i, "reward": round(-0.4 + 0.9 * (1 - math.exp(-i / 12)) + rng.uniform(-0.08, 0.08), 4),
                   "kl": round(0.4 * i / 30 + rng.uniform(0, 0.03), 4),
                   "entropy": round(2.4 - 0.5 * i / 30 + rng.uniform(-0.05, 0.05), 4),
                   "clip_fraction": round(0.02 + 0.1 * rng.random(), 4)} for i in range(1, 31)]
    ppo_run = TrainingRun.objects.create(project=project, kind=RunKind.PPO, status=RunStatus.SUCCEEDED, progress=1,
                                         step=30, total_steps=30, metrics=ppo_points, parent_version=sft,
                                         reward_version=rm)
    ppo = ModelVersion.objects.create(
        name="assistant-ppo-1", kind=VersionKind.POLICY, project=project, path="p", parent=sft, run=ppo_run,
        metrics={"initial_reward": ppo_points[0]["reward"], "final_reward": ppo_points[-1]["reward"],
                 "final_kl": ppo_points[-1]["kl"]})
    rm2 = ModelVersion.objects.create(name="assistant-rm-2", kind=VersionKind.REWARD, project=project, path="r2",
                                      parent=sft, metrics={"eval_accuracy": 0.79, "eval_accuracy_initial": 0.51})
    ppo2_run = TrainingRun.objects.create(project=project, kind=RunKind.PPO, status=RunStatus.SUCCEEDED, progress=1,
                                          step=30, total_steps=30, metrics=ppo_points, parent_version=ppo,
                                          reward_version=rm2)
    ModelVersion.objects.create(name="assistant-ppo-2", kind=VersionKind.POLICY, project=project, path="p2",
                                parent=ppo, run=ppo2_run,
                                metrics={"initial_reward": 0.21, "final_reward": 0.63, "final_kl": 0.38})
    seed_chat(project, alice, sft, ppo, rng)
    return ppo_run


def seed_chat(project, alice, sft, ppo, rng):
    from serving.models import Conversation, Deployment, Feedback, Message

    old = Deployment.objects.create(project=project, policy=sft, is_active=False)
    live = Deployment.objects.create(project=project, policy=ppo)
    chat = Conversation.objects.create(user=alice, project=project)
    for deployment, liked, moderated in ((old, 0.55, 0.08), (live, 0.78, 0.04)):
        for _ in range(60):
            m = Message.objects.create(conversation=chat, role="assistant", content="...", deployment=deployment,
                                       is_template=rng.random() < moderated)
            if rng.random() < 0.5:
                Feedback.objects.create(message=m, user=alice, kind="up" if rng.random() < liked else "down")


def test_the_manager_reads_both_dashboards(live_server, browser, project, alice, bob, charlie, make_user):
    rng = random.Random(7)
    people = [bob, charlie]
    for name in ("dana", "frank"):
        user = make_user(name)
        Membership.objects.create(project=project, user=user, role=Role.LABELER)
        people.append(user)
    seed_labels(project, people, rng)
    ppo_run = seed_training(project, alice, rng)

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "pw-alice")
    page.click("button[type=submit]")

    page.goto(f"{live_server.url}/projects/{project.slug}/dashboard/")
    wait_until(page, "Chart.getChart(document.querySelector('canvas[data-chart=chart-days]')) !== undefined")
    assert page.locator(".chart-box").first.is_visible(), "the chart is drawn from our static Chart.js"
    assert page.locator("[data-labeler=frank]").is_visible()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)

    page.select_option("select[name=labeler]", label="frank")
    page.click("button:has-text('Apply')")
    assert "labeler=" in page.url and page.locator("[data-labeler=bob]").count() == 0

    page.goto(f"{live_server.url}/projects/{project.slug}/dashboard/quality/")
    assert "below gold threshold" in page.locator("[data-labeler=frank]").inner_text()
    page.screenshot(path=str(SHOTS / "dashboard-quality.png"), full_page=True)

    page.goto(f"{live_server.url}/projects/{project.slug}/dashboard/training/?run={ppo_run.pk}"
              "&version=assistant-ppo-2")
    wait_until(page, "document.querySelectorAll('canvas[data-chart]').length > 0 && "
                           "[...document.querySelectorAll('canvas[data-chart]')].every(c => Chart.getChart(c))")
    assert page.locator("[data-table=lineage] tr[data-version=assistant-ppo-1]").is_visible()
    assert page.locator("[data-table=lineage] tbody tr").count() == 4, "base, sft, ppo-1, ppo-2"
    assert page.locator("[data-table=chat] tr").count() == 3
    page.screenshot(path=str(SHOTS / "training-dashboard.png"), full_page=True)
    assert errors == [], errors
