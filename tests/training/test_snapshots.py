"""Freezing labels into snapshots: what a run trains on is fixed, hashed and opens in `datasets`."""

import json
from math import comb

import pytest

from annotation.models import ReviewState
from tests.training import labels
from training.errors import TrainingError
from training.models import DatasetSnapshot
from training.snapshots import snapshot_dir, snapshot_file, snapshot_freeze


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path, settings):
    settings.DATA_DIR = tmp_path / "data"


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def load_with_datasets(path, tmp_path):
    import datasets

    return datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path / "hf-cache"))


def test_approved_demonstrations_become_sft_messages_that_datasets_opens(project, bob, alice, tmp_path):
    labels.demonstration(project, bob, "What is 2+2?", "4")
    labels.demonstration(project, bob, "Name a colour.", "Blue.")
    labels.demonstration(project, bob, "Rejected one?", "no", state=ReviewState.REJECTED)

    snapshot = snapshot_freeze(project=project, kind="sft", created_by=alice)

    assert snapshot.row_count == 2 and len(snapshot.item_ids) == 2
    rows = load_with_datasets(snapshot_file(snapshot), tmp_path)
    assert rows[0]["messages"] == [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]
    assert rows[1]["messages"][-1] == {"role": "assistant", "content": "Blue."}


def test_the_same_labels_freeze_to_the_same_snapshot_and_new_labels_to_a_new_one(project, bob, alice):
    labels.demonstration(project, bob, "Hello?", "Hi there.")
    first = snapshot_freeze(project=project, kind="sft", created_by=alice)
    again = snapshot_freeze(project=project, kind="sft", created_by=alice)
    assert again.pk == first.pk and DatasetSnapshot.objects.count() == 1
    assert len(first.content_hash) == 64

    labels.demonstration(project, bob, "Bye?", "Goodbye.")
    second = snapshot_freeze(project=project, kind="sft", created_by=alice)
    assert second.pk != first.pk and second.content_hash != first.content_hash
    assert second.row_count == 2


def test_the_hash_is_the_sha256_of_the_content_so_it_is_stable(project, bob, alice):
    import hashlib

    labels.demonstration(project, bob, "Hello?", "Hi there.")
    snapshot = snapshot_freeze(project=project, kind="sft", created_by=alice)
    content = snapshot_file(snapshot).read_bytes()
    assert snapshot.content_hash == hashlib.sha256(b"sft\n" + content).hexdigest()


def test_a_snapshot_whose_files_were_lost_gets_them_back(project, bob, alice):
    import shutil

    labels.demonstration(project, bob, "Hello?", "Hi there.")
    snapshot = snapshot_freeze(project=project, kind="sft", created_by=alice)
    original = snapshot_file(snapshot).read_bytes()
    shutil.rmtree(snapshot_dir(snapshot))
    assert snapshot_freeze(project=project, kind="sft", created_by=alice).pk == snapshot.pk
    assert snapshot_file(snapshot).read_bytes() == original


def test_one_ranking_of_k_gives_k_choose_2_pairs_and_the_full_ranking(project, charlie, alice, tmp_path):
    answers = ["best", "good", "fair", "worst"]
    labels.ranked(project, charlie, "Rank these", answers, [[0], [1], [2], [3]])

    snapshot = snapshot_freeze(project=project, kind="preference", created_by=alice)

    ranking = load_with_datasets(snapshot_file(snapshot), tmp_path)[0]
    assert ranking["completions"] == answers and ranking["ranks"] == [0, 1, 2, 3]
    assert ranking["prompt"] == [{"role": "user", "content": "Rank these"}]
    pairs = load_with_datasets(snapshot_file(snapshot, "pairs.jsonl"), tmp_path)
    assert len(pairs) == comb(4, 2)
    assert {(p["chosen"], p["rejected"]) for p in pairs} == {
        (answers[i], answers[j]) for i in range(4) for j in range(i + 1, 4)
    }


def test_tied_completions_make_no_pair(project, charlie, alice):
    labels.ranked(project, charlie, "Rank these", ["a", "b", "c", "d"], [[2], [0, 3], [1]])

    snapshot = snapshot_freeze(project=project, kind="preference", created_by=alice)

    ranking = read_jsonl(snapshot_file(snapshot))[0]
    assert ranking["completions"] == ["c", "a", "d", "b"] and ranking["ranks"] == [0, 1, 1, 2]
    pairs = {(p["chosen"], p["rejected"]) for p in read_jsonl(snapshot_file(snapshot, "pairs.jsonl"))}
    assert pairs == {("c", "a"), ("c", "d"), ("c", "b"), ("a", "b"), ("d", "b")}
    assert ("a", "d") not in pairs and ("d", "a") not in pairs


def test_rejected_rankings_and_pending_sampled_ones_are_left_out(project, charlie, alice):
    kept = labels.ranked(project, charlie, "One", ["x", "y"], [[0], [1]])
    labels.ranked(project, charlie, "Two", ["x", "y"], [[0], [1]], state=ReviewState.REJECTED)
    waiting = labels.ranked(project, charlie, "Three", ["x", "y"], [[1], [0]], state=ReviewState.PENDING)
    waiting.needs_review = True
    waiting.save()

    snapshot = snapshot_freeze(project=project, kind="preference", created_by=alice)

    assert snapshot.item_ids == [kept.pk]


def test_prompts_for_sampling_skip_those_that_already_have_k_completions(project, charlie, alice):
    labels.ranked(project, charlie, "Already sampled", ["a", "b", "c", "d"], [[0], [1], [2], [3]])
    fresh = labels.prompt(project, "Fresh prompt")

    everything = snapshot_freeze(project=project, kind="prompts", created_by=alice)
    to_sample = snapshot_freeze(project=project, kind="prompts", created_by=alice,
                                options={"needs_completions": True})

    assert everything.row_count == 2
    assert to_sample.item_ids == [fresh.pk]
    assert read_jsonl(snapshot_file(to_sample)) == [
        {"messages": [{"role": "user", "content": "Fresh prompt"}], "prompt_id": fresh.pk}
    ]


def test_nothing_to_freeze_and_unknown_options_are_clear_errors(project, alice):
    with pytest.raises(TrainingError, match="no approved demonstrations"):
        snapshot_freeze(project=project, kind="sft", created_by=alice)
    with pytest.raises(TrainingError, match="unknown sft snapshot option 'limit'"):
        snapshot_freeze(project=project, kind="sft", created_by=alice, options={"limit": 3})
    with pytest.raises(TrainingError, match="unknown snapshot kind 'poems'"):
        snapshot_freeze(project=project, kind="poems", created_by=alice)
    assert DatasetSnapshot.objects.count() == 0


def test_snapshots_of_two_projects_never_mix(project, other_project, bob, eve, alice):
    labels.demonstration(project, bob, "Ours?", "Yes.")
    labels.demonstration(other_project, eve, "Theirs?", "Yes.")
    ours = snapshot_freeze(project=project, kind="sft", created_by=alice)
    assert ours.row_count == 1
    assert read_jsonl(snapshot_file(ours))[0]["messages"][0]["content"] == "Ours?"
