"""Issue 13 item 4: a run's config takes typed, bounded values only; a bad one is a 400 naming the key."""

import dataclasses
import json

import pytest

from tests.security.helpers import api_as, base
from tests.training import labels
from training.config_bounds import RANGES, check_value
from training.models import RunKind, TrainingRun
from training.pretrain_config import PretrainConfig
from training.stage_configs import STAGES, config_class


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path, settings):
    settings.DATA_DIR = tmp_path / "data"
    settings.TRAINING_MAX_NPROC = 4


@pytest.mark.parametrize(("config", "key"), [
    ({"nproc": 100000}, "nproc"), ({"nproc": "abc"}, "nproc"), ({"nproc": -3}, "nproc"), ({"nproc": 2.5}, "nproc"),
    ({"max_steps": 1e12}, "max_steps"), ({"max_steps": -5}, "max_steps"),
    ({"learning_rate": -1}, "learning_rate"), ({"learning_rate": 1e308}, "learning_rate"),
    ({"epochs": 1e9}, "epochs"), ({"max_length": 1_000_000_000}, "max_length"),
    ({"batch_size": 0}, "batch_size"), ({"seed": True}, "seed"), ({"warmup_ratio": "0.1"}, "warmup_ratio"),
])
def test_a_harmful_sft_config_is_a_400_naming_the_key(project, alice, bob, tiny_version, config, key):
    labels.demonstration(project, bob, "What is 2+2?", "4")
    response = api_as(alice).post(f"{base(project)}/runs/", {"kind": "sft", "parent_version": tiny_version.name,
                                                             "config": config}, format="json")
    assert response.status_code == 400, response.content
    assert repr(key) in response.json()["detail"]
    assert not TrainingRun.objects.exists()


def test_runner_keys_of_sampling_and_ppo_are_checked_too(project, alice, tiny_version):
    response = api_as(alice).post(f"{base(project)}/runs/", {
        "kind": "sampling", "parent_version": tiny_version.name, "config": {"max_prompts": -1}}, format="json")
    assert response.status_code == 400 and "'max_prompts'" in response.json()["detail"]


def test_sane_values_inside_the_ranges_still_start_a_run(project, alice, bob, tiny_version):
    labels.demonstration(project, bob, "What is 2+2?", "4")
    response = api_as(alice).post(f"{base(project)}/runs/", {
        "kind": "sft", "parent_version": tiny_version.name,
        "config": {"nproc": 2, "max_steps": 3, "learning_rate": 1e-4, "epochs": 1, "max_length": 256}}, format="json")
    assert response.status_code == 201, response.content


def test_the_runs_page_shows_an_out_of_range_key_as_a_form_error(client, project, alice, bob, tiny_version):
    labels.demonstration(project, bob, "What is 2+2?", "4")
    client.force_login(alice)
    response = client.post(f"/projects/{project.slug}/runs/", {
        "kind": "sft", "parent_version": tiny_version.pk, "config": json.dumps({"max_steps": 10**12})})
    assert response.status_code == 400
    assert "&#x27;max_steps&#x27; must be between 0 and 1000000" in response.content.decode()
    assert not TrainingRun.objects.exists()


@pytest.mark.parametrize(("values", "key"), [
    ({"max_steps": 10**12}, "max_steps"), ({"learning_rate": float("inf")}, "learning_rate"),
    ({"n_layer": "4"}, "n_layer"), ({"block_size": 1.5}, "block_size"), ({"from_scratch": 1}, "from_scratch"),
])
def test_pretrain_config_from_dict_checks_types_and_ranges(values, key):
    with pytest.raises(ValueError, match=repr(key)):
        PretrainConfig.from_dict(values)
    assert PretrainConfig.from_dict({"max_steps": 10, "learning_rate": 1e-3}).max_steps == 10


def test_the_pretrain_form_refuses_more_processes_than_the_machine_has(client, project, alice):
    from training.corpus import corpus_upload

    corpus = corpus_upload(project=project, name="c.txt", chunks=[b"one\ntwo\n"])
    client.force_login(alice)
    response = client.post(f"/projects/{project.slug}/corpora/", {"corpus": corpus.pk, "nproc": 100000, "config": "{}"})
    assert response.status_code == 200 and not TrainingRun.objects.exists()
    assert "less than or equal to 4" in response.content.decode()


@pytest.mark.parametrize("kind", sorted(STAGES))
def test_every_numeric_field_of_every_stage_config_has_a_range(kind):
    cls = config_class(kind)
    if cls is None:
        pytest.skip(f"{kind} not installed")
    numeric = [f.name for f in dataclasses.fields(cls) if f.type in (int, float, "int", "float")]
    assert numeric and not [name for name in numeric if name not in RANGES]


def test_pretrain_numeric_fields_have_ranges_and_the_defaults_fit_them():
    for f in dataclasses.fields(PretrainConfig):
        if f.type in ("int", "float"):
            assert f.name in RANGES
            assert check_value(f.name, f.default, integer=f.type == "int") is None
    for kind in STAGES:
        cls = config_class(kind)
        for name, value in dataclasses.asdict(cls()).items() if cls else ():
            if name in RANGES and not isinstance(value, bool):
                assert check_value(name, value, integer=isinstance(value, int)) is None, (kind, name)


def test_nproc_is_bounded_by_the_machine_when_not_configured(settings):
    from training.config_bounds import machine_nproc

    assert check_value("nproc", machine_nproc(), integer=True) is None
    assert check_value("nproc", machine_nproc() + 1, integer=True) is not None
    assert RunKind.SFT in STAGES
