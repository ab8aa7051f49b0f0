"""The training dashboard: a run's curves, versions along a lineage, chat outcomes per deployed version."""

import json

import pytest

from training.dashboard import chat_outcomes, run_curves, training_dashboard
from training.models import ModelVersion, RunKind, RunStatus, TrainingRun, VersionKind


def version(project, name, kind=VersionKind.POLICY, *, parent=None, run=None, metrics=None):
    return ModelVersion.objects.create(name=name, kind=kind, project=project, parent=parent, run=run,
                                       path=name, metrics=metrics or {})


def finished_run(project, kind, metrics, **fields):
    return TrainingRun.objects.create(project=project, kind=kind, status=RunStatus.SUCCEEDED, metrics=metrics,
                                      step=len(metrics), total_steps=len(metrics), progress=1.0, **fields)


@pytest.fixture
def loop(project):
    """base -> sft -> ppo (against rm), each with its run and metrics."""
    base = version(project, "base")
    sft_run = finished_run(project, RunKind.SFT, [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5, "eval_loss": 1.6}],
                           parent_version=base)
    sft = version(project, "sft-1", parent=base, run=sft_run, metrics={"eval_loss": 1.6})
    rm_run = finished_run(project, RunKind.REWARD, [{"step": 1, "loss": 0.69, "batch_accuracy": 0.5},
                                                    {"step": 2, "loss": 0.6, "batch_accuracy": 0.75,
                                                     "eval_accuracy": 0.7}], parent_version=sft)
    rm = version(project, "rm-1", VersionKind.REWARD, parent=sft, run=rm_run,
                 metrics={"eval_accuracy": 0.7, "eval_accuracy_initial": 0.5})
    ppo_points = [{"step": i, "reward": 0.1 * i, "kl": 0.01 * i, "entropy": 2.0, "clip_fraction": 0.05}
                  for i in range(1, 4)]
    ppo_run = finished_run(project, RunKind.PPO, ppo_points, parent_version=sft, reward_version=rm)
    ppo = version(project, "ppo-1", parent=sft, run=ppo_run,
                  metrics={"initial_reward": 0.1, "final_reward": 0.3, "final_kl": 0.03})
    return {"base": base, "sft": sft, "rm": rm, "ppo": ppo, "sft_run": sft_run, "rm_run": rm_run, "ppo_run": ppo_run}


def test_each_run_kind_gets_its_curves(loop):
    titles = {c["title"]: c for c in run_curves(loop["sft_run"])}
    assert list(titles) == ["Loss"]
    loss = titles["Loss"]
    assert loss["labels"] == ["1", "2"]
    assert loss["datasets"] == [{"label": "training loss", "data": [2.0, 1.5]}, {"label": "eval loss", "data": [None, 1.6]}]
    assert {c["title"] for c in run_curves(loop["rm_run"])} == {"Loss", "Reward-model accuracy"}
    assert [c["title"] for c in run_curves(loop["ppo_run"])] == [
        "PPO reward", "KL to the reference (nats per answer)", "Policy entropy", "PPO clip fraction"]


def test_a_long_run_is_thinned_for_the_chart_and_its_table(project):
    run = finished_run(project, RunKind.SFT, [{"step": i, "loss": 1 / i} for i in range(1, 2001)])
    (loss,) = run_curves(run)
    assert len(loss["labels"]) <= 501 and loss["labels"][-1] == "2000"
    assert len(loss["rows"]) <= 41 and loss["rows"][-1][0] == "2000" and loss["thinned"]


def test_the_lineage_compares_versions_oldest_first(loop, project):
    data = training_dashboard(project, version_name="ppo-1")
    rows = data["lineage"]["rows"]
    assert [r["name"] for r in rows] == ["base", "sft-1", "ppo-1"]
    assert rows[1]["eval_loss"] == 1.6
    assert rows[2]["rm"] == "rm-1" and rows[2]["rm_accuracy"] == 0.7 and rows[2]["final_reward"] == 0.3
    assert data["reward_chart"]["datasets"][0]["data"] == [0.7]


def test_chat_thumbs_up_and_moderation_rate_per_deployed_version(loop, project, alice, bob):
    from serving.models import Conversation, Deployment, Feedback, Message, ModerationEvent

    old = Deployment.objects.create(project=project, policy=loop["sft"], is_active=False)
    live = Deployment.objects.create(project=project, policy=loop["ppo"])
    chat = Conversation.objects.create(user=alice, project=project)

    def answer(deployment, *, template=False):
        return Message.objects.create(conversation=chat, role="assistant", content="hi", deployment=deployment,
                                      model_version=deployment.policy, is_template=template)

    # sft-1: 4 answers, 1 up and 3 down -> 0.25; one template answer -> moderation rate 0.25
    old_answers = [answer(old) for _ in range(3)] + [answer(old, template=True)]
    Feedback.objects.create(message=old_answers[0], user=alice, kind="up")
    for m in old_answers[1:]:
        Feedback.objects.create(message=m, user=alice, kind="down")
    ModerationEvent.objects.create(project=project, conversation=chat, message=old_answers[3], direction="output",
                                   text="x", categories=["violence"])
    # ppo-1: 2 answers, both liked by two people -> 1.0; no moderation
    for m in (answer(live), answer(live)):
        Feedback.objects.create(message=m, user=alice, kind="up")
        Feedback.objects.create(message=m, user=bob, kind="up")
    by_name = {o["name"]: o for o in chat_outcomes(project)}
    assert by_name["sft-1"]["thumbs_up_rate"] == 0.25 and by_name["sft-1"]["moderation_rate"] == 0.25
    assert by_name["sft-1"]["events"] == 1 and not by_name["sft-1"]["active"]
    assert by_name["ppo-1"]["thumbs_up_rate"] == 1.0 and by_name["ppo-1"]["moderation_rate"] == 0.0
    assert by_name["ppo-1"]["active"] and by_name["ppo-1"]["answers"] == 2


def test_the_page_draws_the_charts_with_their_numbers(client, loop, project, alice):
    client.force_login(alice)
    page = client.get(f"/projects/{project.slug}/dashboard/training/?run={loop['ppo_run'].pk}").content.decode()
    assert f'data-run="{loop["ppo_run"].pk}"' in page
    assert 'canvas data-chart="run-' in page and "PPO clip fraction" in page
    data = json.loads(page.split(f'id="run-{loop["ppo_run"].pk}-reward-data" type="application/json">')[1].split("</script>")[0])
    assert data["datasets"][0]["data"] == pytest.approx([0.1, 0.2, 0.3])
    assert 'data-version="ppo-1"' in page and "0.100 → 0.300" in page
    assert "hx-trigger" not in page, "a finished run does not poll"


def test_a_running_run_refreshes_its_curves(client, project, alice):
    run = TrainingRun.objects.create(project=project, kind=RunKind.SFT, status=RunStatus.RUNNING, step=1,
                                     total_steps=10, metrics=[{"step": 1, "loss": 3.0}])
    client.force_login(alice)
    page = client.get(f"/projects/{project.slug}/dashboard/training/").content.decode()
    assert 'hx-trigger="every 5s"' in page and f"run={run.pk}&amp;partial=curves" in page
    partial = client.get(f"/projects/{project.slug}/dashboard/training/?run={run.pk}&partial=curves").content.decode()
    assert 'id="run-curves"' in partial and "<html" not in partial


def test_another_projects_run_is_not_shown(client, project, other_project, alice):
    foreign = finished_run(other_project, RunKind.SFT, [{"step": 1, "loss": 9.0}])
    client.force_login(alice)
    page = client.get(f"/projects/{project.slug}/dashboard/training/?run={foreign.pk}").content.decode()
    assert f'data-run="{foreign.pk}"' not in page
    assert client.get(f"/projects/{project.slug}/dashboard/training/?run=abc").status_code == 200
