"""The training REST API: snapshots, exports, runs and model versions, for the project's managers only."""

import json
import shutil

import pytest
from rest_framework.test import APIClient

from serving.keys import api_key_create
from tests.training import labels
from training import runs
from training.models import DatasetSnapshot, RunStatus, TrainingRun, VersionKind
from training.registry import model_version_register, version_dir


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path, settings):
    settings.DATA_DIR = tmp_path / "data"


def api_as(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(user=user, name='tests')[1]}")
    return client


def base(project) -> str:
    return f"/api/projects/{project.slug}"


def register(name, tiny_model_dir, project, kind=VersionKind.POLICY, **fields):
    folder = version_dir(name)
    shutil.copytree(tiny_model_dir, folder)
    return model_version_register(name=name, kind=kind, folder=folder, project=project, **fields)


@pytest.mark.parametrize("path", ["snapshots/", "runs/", "models/", "exports/sft.jsonl"])
def test_only_the_projects_managers_reach_its_training_api(project, alice, bob, eve, other_project, path):
    assert api_as(alice).get(f"{base(project)}/{path}").status_code == 200
    assert api_as(bob).get(f"{base(project)}/{path}").status_code == 404
    assert api_as(eve).get(f"{base(project)}/{path}").status_code == 404
    assert APIClient().get(f"{base(project)}/{path}").status_code in (401, 403)


def test_a_snapshot_is_created_once_per_content_and_downloaded(project, alice, charlie):
    labels.ranked(project, charlie, "Rank", ["good", "bad"], [[0], [1]])
    client = api_as(alice)

    created = client.post(f"{base(project)}/snapshots/", {"kind": "preference"}, format="json")
    again = client.post(f"{base(project)}/snapshots/", {"kind": "preference"}, format="json")

    assert created.status_code == 201 and again.status_code == 200
    assert created.json()["id"] == again.json()["id"] and created.json()["row_count"] == 1
    listing = client.get(f"{base(project)}/snapshots/").json()
    assert [s["id"] for s in listing["results"]] == [created.json()["id"]]
    pairs = client.get(created.json()["files"]["pairs.jsonl"])
    assert json.loads(b"".join(pairs.streaming_content)) == {
        "prompt": [{"role": "user", "content": "Rank"}], "chosen": "good", "rejected": "bad",
        "chosen_flags": [], "rejected_flags": [],
    }


def test_freezing_nothing_is_a_400_with_the_reason(project, alice):
    response = api_as(alice).post(f"{base(project)}/snapshots/", {"kind": "sft"}, format="json")
    assert response.status_code == 400
    assert "no approved demonstrations" in response.json()["detail"]
    assert not DatasetSnapshot.objects.exists()


def test_a_run_is_started_watched_and_cancelled(project, alice, bob, tiny_version):
    labels.demonstration(project, bob, "What is 2+2?", "4")
    client = api_as(alice)

    created = client.post(f"{base(project)}/runs/", {
        "kind": "sft", "parent_version": tiny_version.name, "config": {"max_steps": 3},
    }, format="json")

    assert created.status_code == 201, created.json()
    run = created.json()
    assert run["status"] == "queued" and run["parent_version"] == tiny_version.name and run["snapshot"]
    detail = client.get(f"{base(project)}/runs/{run['id']}/").json()
    assert detail["config"] == {"max_steps": 3} and detail["metrics"] == []
    cancelled = client.post(f"{base(project)}/runs/{run['id']}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = client.post(f"{base(project)}/runs/{run['id']}/cancel/")
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]


@pytest.mark.parametrize(("payload", "message"), [
    ({"kind": "ppo"}, "needs a policy version"),
    ({"kind": "sft", "config": {"learning_rat": 1}}, "unknown sft config key 'learning_rat'"),
    ({"kind": "sft", "parent_version": "nope"}, "'nope' is not a model version of this project"),
    ({"kind": "smoke"}, "cannot start a 'smoke' run"),
    ({"kind": "reward"}, "no rankings eligible"),
])
def test_a_wrong_run_request_is_a_400_naming_the_problem(project, alice, bob, tiny_version, payload, message):
    labels.demonstration(project, bob, "What is 2+2?", "4")
    payload = {"parent_version": tiny_version.name, **payload} if payload["kind"] in ("sft", "reward") else payload
    response = api_as(alice).post(f"{base(project)}/runs/", payload, format="json")
    assert response.status_code == 400 and message in response.json()["detail"]
    assert not TrainingRun.objects.exists()


def test_ppo_needs_a_reward_version_and_takes_only_a_reward_model_as_one(project, alice, tiny_version, tiny_model_dir):
    client = api_as(alice)
    no_reward = client.post(f"{base(project)}/runs/", {"kind": "ppo", "parent_version": tiny_version.name},
                            format="json")
    assert no_reward.status_code == 400 and "needs a reward model" in no_reward.json()["detail"]
    wrong = client.post(f"{base(project)}/runs/", {
        "kind": "ppo", "parent_version": tiny_version.name, "reward_version": tiny_version.name,
    }, format="json")
    assert wrong.status_code == 400 and "must be a reward version" in wrong.json()["detail"]


def test_a_run_of_another_project_is_a_404(project, other_project, alice, eve):
    theirs = runs.run_create(kind="smoke", project=other_project, created_by=eve)
    assert api_as(alice).get(f"{base(project)}/runs/{theirs.pk}/").status_code == 404
    assert api_as(alice).post(f"{base(project)}/runs/{theirs.pk}/cancel/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == RunStatus.QUEUED


def test_a_model_version_comes_with_its_lineage_down_to_snapshots(project, alice, tiny_model_dir):
    sft_snapshot = DatasetSnapshot.objects.create(project=project, kind="sft", content_hash="a" * 64, row_count=5)
    pref_snapshot = DatasetSnapshot.objects.create(project=project, kind="preference", content_hash="b" * 64,
                                                   row_count=9)
    base_version = register("start", tiny_model_dir, project)
    sft_run = TrainingRun.objects.create(project=project, kind="sft", status="succeeded", snapshot=sft_snapshot,
                                         parent_version=base_version)
    sft = register("sft-1", tiny_model_dir, project, parent=base_version, run=sft_run, snapshot=sft_snapshot,
                   metrics={"eval_loss": 1.5})
    rm_run = TrainingRun.objects.create(project=project, kind="reward", status="succeeded", snapshot=pref_snapshot,
                                        parent_version=sft)
    rm = register("rm-1", tiny_model_dir, project, VersionKind.REWARD, parent=sft, run=rm_run, snapshot=pref_snapshot)
    ppo_run = TrainingRun.objects.create(project=project, kind="ppo", status="succeeded", parent_version=sft,
                                         reward_version=rm)
    ppo = register("ppo-1", tiny_model_dir, project, parent=sft, run=ppo_run)

    detail = api_as(alice).get(f"{base(project)}/models/{ppo.name}/").json()

    chain = detail["lineage"]
    assert [n["version"] for n in chain] == ["ppo-1", "sft-1", "start"]
    assert chain[0]["reward_version"] == "rm-1" and chain[0]["run_kind"] == "ppo"
    assert chain[1]["snapshot"] == sft_snapshot.pk and chain[1]["snapshot_kind"] == "sft"
    assert chain[1]["metrics"] == {"eval_loss": 1.5}
    assert chain[2]["run"] is None
    names = [v["name"] for v in api_as(alice).get(f"{base(project)}/models/").json()["results"]]
    assert set(names) == {"ppo-1", "rm-1", "sft-1", "start"}
    rewards = api_as(alice).get(f"{base(project)}/models/?kind=reward").json()["results"]
    assert [v["name"] for v in rewards] == ["rm-1"]


def test_the_schema_documents_the_training_endpoints(client, alice):
    client.force_login(alice)
    schema = client.get("/api/schema/").content.decode()
    assert "/api/projects/{slug}/runs/{run_id}/cancel/" in schema
    assert "/api/projects/{slug}/models/{name}/" in schema
