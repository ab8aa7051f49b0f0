"""The manager's pages: runs with progress and ETA, a live run page, versions with lineage, snapshots."""

import json
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.training import labels
from training import runs
from training.models import DatasetSnapshot, ModelVersion, RunStatus, TrainingRun, VersionKind
from training.registry import model_version_register, version_dir


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path, settings):
    settings.DATA_DIR = tmp_path / "data"


def logged_in(client, user):
    client.force_login(user)
    return client


def running_run(project, alice, *, step=3, total=12, metrics=({"loss": 2.5}, {"loss": 1.75})):
    run = runs.run_create(kind="smoke", project=project, created_by=alice)
    token = runs.run_claim(run_id=run.pk, worker="w1")
    TrainingRun.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(seconds=30))
    for i, point in enumerate(metrics, start=step - len(metrics) + 1):
        runs.run_record_progress(run_id=run.pk, token=token, step=i, total=total, metrics=point)
    run.refresh_from_db()
    return run, token


@pytest.mark.parametrize("path", ["runs/", "models/", "snapshots/", "runs/{run}/", "models/{version}/"])
def test_only_managers_of_the_project_see_training_pages(client, project, alice, bob, dave, eve, other_project,
                                                         tiny_version, path):
    run, _ = running_run(project, alice)
    url = f"/projects/{project.slug}/" + path.format(run=run.pk, version=tiny_version.name)
    assert logged_in(client, alice).get(url).status_code == 200
    for outsider in (bob, dave, eve):
        assert logged_in(client, outsider).get(url).status_code == 404


def test_an_anonymous_visitor_is_sent_to_log_in(client, project):
    response = client.get(f"/projects/{project.slug}/runs/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_runs_list_shows_status_progress_and_time_left(client, project, alice):
    run, _ = running_run(project, alice, step=3, total=12)
    page = logged_in(client, alice).get(f"/projects/{project.slug}/runs/").content.decode()
    row = page[page.index(f'data-run="{run.pk}"'):]
    assert 'data-status="running"' in row
    assert "25%" in row and "step 3 of 12" in row
    assert re.search(r"about 1m 3\ds left", row), "30s for a quarter leaves about 90s"
    assert 'hx-trigger="every 5s"' in page


def test_the_run_page_polls_its_live_part_until_the_run_finishes(client, project, alice):
    run, token = running_run(project, alice)
    client = logged_in(client, alice)
    url = f"/projects/{project.slug}/runs/{run.pk}/"

    live = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert live.startswith('<div id="run-live"') and "<html" not in live
    assert 'hx-trigger="every 3s"' in live
    assert "Cancel run" in live
    cells = re.findall(r"<td>([^<]*)</td>", live[live.index('id="metrics"'):])
    assert "1.75" in cells and "2.5" in cells

    runs.run_succeed(run_id=run.pk, token=token, summary={"steps": 12, "final_loss": 0.123456})
    finished = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in finished and "Cancel run" not in finished
    assert "final_loss" in finished and "0.1235" in finished


def test_a_failed_run_shows_its_error(client, project, alice):
    run, token = running_run(project, alice)
    runs.run_fail(run_id=run.pk, token=token, error="TrainingDiverged: reward became NaN at iteration 3")
    page = logged_in(client, alice).get(f"/projects/{project.slug}/runs/{run.pk}/").content.decode()
    assert "reward became NaN at iteration 3" in page and 'data-status="failed"' in page


def test_the_cancel_button_stops_a_queued_run(client, project, alice):
    run = runs.run_create(kind="smoke", project=project, created_by=alice)
    response = logged_in(client, alice).post(f"/projects/{project.slug}/runs/{run.pk}/cancel/", follow=True)
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert f"Run #{run.pk} cancelled" in response.content.decode()


def test_a_labeler_cannot_cancel_a_run(client, project, alice, bob):
    run = runs.run_create(kind="smoke", project=project, created_by=alice)
    assert logged_in(client, bob).post(f"/projects/{project.slug}/runs/{run.pk}/cancel/").status_code == 404
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED


def test_a_run_of_another_project_is_not_found_through_this_one(client, project, other_project, alice, eve):
    theirs = runs.run_create(kind="smoke", project=other_project, created_by=eve)
    assert logged_in(client, alice).get(f"/projects/{project.slug}/runs/{theirs.pk}/").status_code == 404


def test_starting_an_sft_run_freezes_the_demonstrations_and_queues_it(client, project, alice, bob, tiny_version):
    labels.demonstration(project, bob, "What is 2+2?", "4")
    response = logged_in(client, alice).post(f"/projects/{project.slug}/runs/", {
        "kind": "sft", "snapshot": "", "parent_version": tiny_version.pk, "reward_version": "",
        "config": '{"max_steps": 2}',
    })
    run = TrainingRun.objects.get(project=project, kind="sft")
    assert response.status_code == 302 and response["Location"] == f"/projects/{project.slug}/runs/{run.pk}/"
    assert run.status == RunStatus.QUEUED and run.parent_version == tiny_version
    assert run.snapshot.kind == "sft" and run.snapshot.row_count == 1 and run.config == {"max_steps": 2}


def test_the_start_form_explains_what_is_wrong(client, project, alice, tiny_version):
    client = logged_in(client, alice)
    url = f"/projects/{project.slug}/runs/"
    bad_json = client.post(url, {"kind": "sft", "parent_version": tiny_version.pk, "config": "{max_steps: 2}"})
    assert bad_json.status_code == 400 and "Config is not valid JSON" in bad_json.content.decode()
    no_data = client.post(url, {"kind": "sft", "parent_version": tiny_version.pk, "config": ""})
    assert no_data.status_code == 400 and "no approved demonstrations" in no_data.content.decode()
    assert not TrainingRun.objects.filter(kind="sft").exists()


def test_the_start_form_shows_each_stages_defaults(client, project, alice):
    page = logged_in(client, alice).get(f"/projects/{project.slug}/runs/").content.decode()
    for kind in ("sft", "sampling", "reward", "ppo"):
        assert f'data-kind="{kind}"' in page
    sampling = page[page.index('data-kind="sampling"'):]
    assert f"&quot;k&quot;: {project.completions_per_prompt}" in sampling[:sampling.index("</details>")]


def lineage_fixture(project, alice, tiny_model_dir):
    """base -> sft version (trained on an SFT snapshot by a run)."""
    import shutil

    snapshot = DatasetSnapshot.objects.create(project=project, kind="sft", content_hash="ab" * 32, row_count=7,
                                              path="snapshots/x")
    base_dir = version_dir(f"{project.slug}-base")
    shutil.copytree(tiny_model_dir, base_dir)
    base = model_version_register(name=base_dir.name, kind=VersionKind.POLICY, folder=base_dir, project=project)
    run = TrainingRun.objects.create(project=project, kind="sft", status=RunStatus.SUCCEEDED, snapshot=snapshot,
                                     parent_version=base, created_by=alice, progress=1.0)
    sft_dir = version_dir(f"{project.slug}-sft-{run.pk}")
    shutil.copytree(tiny_model_dir, sft_dir)
    sft = model_version_register(name=sft_dir.name, kind=VersionKind.POLICY, folder=sft_dir, project=project,
                                 parent=base, run=run, snapshot=snapshot, config={"lr": 0.001},
                                 metrics={"eval_loss": 1.25})
    return base, run, snapshot, sft


def test_the_model_page_traces_a_version_down_to_its_snapshot(client, project, alice, tiny_model_dir):
    base, run, snapshot, sft = lineage_fixture(project, alice, tiny_model_dir)
    client = logged_in(client, alice)

    listing = client.get(f"/projects/{project.slug}/models/").content.decode()
    assert f'data-version="{sft.name}"' in listing and f'data-version="{base.name}"' in listing

    page = client.get(f"/projects/{project.slug}/models/{sft.name}/").content.decode()
    lineage = page[page.index('id="lineage"'):]
    assert lineage.index(f'data-version="{sft.name}"') < lineage.index(f'data-version="{base.name}"')
    assert f"snapshot #{snapshot.pk}" in lineage and f"#{run.pk}" in lineage and "7 rows" in lineage
    assert "eval_loss" in page and "&quot;lr&quot;: 0.001" in page


def test_a_version_of_another_project_is_not_found(client, project, other_project, alice, eve, tiny_model_dir):
    import shutil

    folder = version_dir("theirs")
    shutil.copytree(tiny_model_dir, folder)
    model_version_register(name="theirs", kind=VersionKind.POLICY, folder=folder, project=other_project)
    assert logged_in(client, alice).get(f"/projects/{project.slug}/models/theirs/").status_code == 404
    assert ModelVersion.objects.filter(name="theirs").exists()


def test_snapshots_are_frozen_listed_and_downloaded_from_the_page(client, project, alice, charlie):
    labels.ranked(project, charlie, "Rank", ["a", "b", "c"], [[0], [1], [2]])
    client = logged_in(client, alice)
    response = client.post(f"/projects/{project.slug}/snapshots/", {"kind": "preference", "options": ""}, follow=True)
    snapshot = DatasetSnapshot.objects.get(project=project)
    assert f"Snapshot #{snapshot.pk} holds 1 rows" in response.content.decode()

    pairs = client.get(f"/projects/{project.slug}/snapshots/{snapshot.pk}/pairs.jsonl")
    lines = [json.loads(x) for x in b"".join(pairs.streaming_content).splitlines()]
    assert pairs["Content-Disposition"].startswith("attachment") and len(lines) == 3
    assert client.get(f"/projects/{project.slug}/snapshots/{snapshot.pk}/secrets.txt").status_code == 404


def test_the_export_link_streams_current_labels(client, project, alice, bob):
    labels.demonstration(project, bob, "Hi?", "Hello.")
    response = logged_in(client, alice).get(f"/projects/{project.slug}/exports/sft.jsonl")
    assert response.streaming
    assert json.loads(b"".join(response.streaming_content))["messages"][1]["content"] == "Hello."
    assert logged_in(client, bob).get(f"/projects/{project.slug}/exports/sft.jsonl").status_code == 404


def test_auto_start_settings_are_saved_from_the_runs_page(client, project, alice):
    from training.autostart import training_settings_of

    response = logged_in(client, alice).post(f"/projects/{project.slug}/runs/autostart/", {
        "autostart_reward": "on", "autostart_every": "3", "reward_parent": "", "reward_config": "{}",
    }, follow=True)
    assert "Auto-start settings saved" in response.content.decode()
    current = training_settings_of(project)
    assert current.autostart_reward and current.autostart_every == 3


def test_a_moderation_run_page_shows_each_categorys_dev_figures_next_to_its_parents(client, project, alice):
    run, token = running_run(project, alice)
    per_category = {"violence": {"auprc": 0.91, "parent_auprc": 0.42, "precision": 0.8, "recall": 0.7, "positives": 40},
                    "any": {"auprc": 0.97, "parent_auprc": 0.61, "precision": 0.9, "recall": 0.8, "positives": 700}}
    runs.run_succeed(run_id=run.pk, token=token, summary={"steps": 380, "per_category": per_category})
    page = logged_in(client, alice).get(f"/projects/{project.slug}/runs/{run.pk}/",
                                        HTTP_HX_REQUEST="true").content.decode()
    table = page[page.index('id="per-category"'):]
    rows = re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td>", table)
    assert ("violence", "0.91", "0.42") in rows and ("any", "0.97", "0.61") in rows
