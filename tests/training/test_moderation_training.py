"""The moderation training stage learns a category from labelled rows and writes a folder the server loads."""

import json
import random

import numpy as np
import pytest
import torch

from serving.moderation import load_moderator
from training.errors import TrainingError
from training.moderation import ModerationTrainConfig, split_rows, train_moderation
from training.reporting import ListReporter

SPAM = ["buy cheap {item} now at {site}", "click {site} to win a free {item}", "limited offer: {item} 90% off at {site}",
        "earn money fast, visit {site} today", "hot deal on {item}, order at {site}", "you won a {item}! claim it on {site}"]
BENIGN = ["can you help me fix my {item}", "what is the history of the {item}", "my friend gave me a {item} yesterday",
          "how do i clean a {item}", "is a {item} a good gift for my dad", "i read an article about the {item} on the bus",
          "where did i leave my {item}", "compare two brands of {item} for me"]
ITEMS = ["watch", "bicycle", "phone", "laptop", "camera", "guitar", "lamp", "backpack", "printer", "kettle"]
SITES = ["bestdeals.example", "win-big.example", "cheap-stuff.example", "prizes.example"]


def synthetic(path, *, category="spam", n=160, seed=0):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        harmful = i % 4 == 0
        template = rng.choice(SPAM if harmful else BENIGN)
        text = template.format(item=rng.choice(ITEMS), site=rng.choice(SITES))
        rows.append({"text": text, "categories": [category] if harmful else []})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def config():
    return ModerationTrainConfig(epochs=30, n_features=4096, dropout_copies=1, eval_fraction=0.25, corpus=False,
                                 encoder="tiny", head_epochs=60)


def test_training_learns_a_category_and_the_folder_flags_it(tmp_path, config):
    reporter = ListReporter()
    result = train_moderation(synthetic(tmp_path / "data.jsonl"), tmp_path / "model", config, reporter)

    # a quarter of the rows are spam: a random ranking would score AUPRC about 0.25
    spam = result["per_category"]["spam"]
    assert spam["auprc"] >= 0.9 and spam["recall"] >= 0.8 and spam["positives"] > 0
    assert result["rows_eval"] > 0 and result["categories"][-1] == "spam"
    losses = [m["loss"] for m in reporter.metrics]
    assert losses[-1] < losses[0]
    assert reporter.steps[-1] == (result["steps"], result["steps"])

    moderator = load_moderator(tmp_path / "model", timeout_ms=2000)
    assert "spam" in moderator.categories
    flagged = moderator.check("Claim your free laptop today at prizes.example, limited offer!")
    assert flagged.flagged and flagged.categories["spam"]
    assert not moderator.check("how do i clean a guitar").flagged
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert not list((tmp_path / "model").glob("*.pt")) and not list((tmp_path / "model").glob("*.pkl"))


def test_base_folder_rows_are_merged_and_both_categories_learned(tmp_path, config):
    base = tmp_path / "base"
    train_moderation(synthetic(tmp_path / "spam.jsonl"), base, config)
    rows = [{"text": f"i will {verb} the {item} owner tonight", "categories": ["threat"]}
            for verb in ("hurt", "attack", "beat up", "punch") for item in ITEMS]
    (tmp_path / "threat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    result = train_moderation(tmp_path / "threat.jsonl", tmp_path / "next", config, base_dir=base)

    base_texts = {json.loads(line)["text"] for line in (tmp_path / "spam.jsonl").read_text().splitlines()}
    assert result["rows"] == len(base_texts) + len(rows)  # duplicates of a text count once
    assert {"spam", "threat"} <= set(result["categories"])
    moderator = load_moderator(tmp_path / "next", timeout_ms=2000)
    assert moderator.check("i will punch the camera owner tonight").categories["threat"]
    assert moderator.check("buy cheap phone now at bestdeals.example").categories["spam"]


def test_a_newer_label_for_the_same_text_wins(tmp_path, config):
    base = tmp_path / "base"
    data = synthetic(tmp_path / "data.jsonl")
    train_moderation(data, base, config)
    first = json.loads(data.read_text().splitlines()[0])
    (tmp_path / "review.jsonl").write_text(json.dumps({"text": first["text"], "categories": []}) + "\n")
    train_moderation(tmp_path / "review.jsonl", tmp_path / "next", config, base_dir=base)
    merged = [json.loads(line) for line in (tmp_path / "next" / "data.jsonl").read_text().splitlines()]
    assert [r["categories"] for r in merged if r["text"] == first["text"]] == [[]]


def test_rows_of_one_group_stay_on_one_side_of_the_split():
    rows = [{"text": f"t{i}", "categories": ["x"] if i % 2 else [], "group": f"g{i // 4}"} for i in range(80)]
    train, held = split_rows(rows, 0.25, seed=0)
    assert held and not {r["group"] for r in train} & {r["group"] for r in held}


def test_bad_inputs_fail_with_a_training_error(tmp_path, config):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(TrainingError, match="needs labelled texts"):
        train_moderation(empty, tmp_path / "out", config)
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(TrainingError, match="not a moderation model"):
        train_moderation(synthetic(tmp_path / "d.jsonl"), tmp_path / "out", config, base_dir=policy)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x"}) + "\n")
    with pytest.raises(TrainingError, match="line 1"):
        train_moderation(bad, tmp_path / "out", config)


def test_the_run_form_builds_the_stage_config():
    from training.models import RunKind
    from training.stage_configs import config_build, config_defaults

    assert config_defaults(RunKind.MODERATION)["epochs"] == ModerationTrainConfig().epochs
    assert config_build(RunKind.MODERATION, {"epochs": 3}).epochs == 3


THREATS = ["i will hurt the {item} owner tonight", "the {item} seller deserves a beating", "wait until i find that {item} guy"]


def test_a_run_on_a_tiny_encoder_changes_its_scores_on_the_new_training_rows(tmp_path, config):
    from training.moderation_model import load_model
    from training.normalize import normalize

    base = tmp_path / "base"
    train_moderation(synthetic(tmp_path / "spam.jsonl"), base, config)
    assert json.loads((base / "config.json").read_text())["encoder"]["source"] == "folder"
    events = [{"text": t.format(item=item), "categories": ["violence"]} for t in THREATS for item in ITEMS]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in events))

    result = train_moderation(tmp_path / "events.jsonl", tmp_path / "next", config, base_dir=base)

    before, _ = load_model(base)
    after, _ = load_model(tmp_path / "next")
    j = list(after.categories).index("violence")
    for model_, sign in ((before, -1), (after, 1)):
        head = np.stack([model_.encoder.logits(normalize(r["text"])) for r in events])[:, j]
        assert (sign * head > 0).mean() >= 0.9, "the encoder head learned the new rows"
    assert after.encoder_weight["violence"] > 0 or after.encoder_weight["spam"] > 0
    assert result["per_category"]["violence"]["positives"] > 0
    assert "parent_auprc" in result["per_category"]["spam"]


def test_fine_tuning_the_top_layer_changes_it_and_the_folder_keeps_it(tmp_path, config):
    from dataclasses import replace

    from training.moderation_model import load_model
    from training.normalize import normalize

    frozen = train_moderation(synthetic(tmp_path / "data.jsonl"), tmp_path / "frozen", config)
    tuned = train_moderation(tmp_path / "data.jsonl", tmp_path / "tuned", replace(
        config, finetune_layers=1, finetune_epochs=3, finetune_learning_rate=1e-3))

    assert tuned["steps"] > frozen["steps"]
    a, _ = load_model(tmp_path / "frozen")
    b, _ = load_model(tmp_path / "tuned")
    before, after = a.encoder.encoder.model.state_dict(), b.encoder.encoder.model.state_dict()
    changed = {k.split(".")[2] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"1"}, "only the top layer (of two) is trained"
    text = normalize("Claim your free laptop today at prizes.example, limited offer!")
    assert not np.allclose(a.encoder.logits(text), b.encoder.logits(text))
    assert tuned["per_category"]["spam"]["auprc"] >= 0.9


def test_fragments_are_benign_prefixes_and_never_cut_from_harmful_rows():
    from training.moderation_fragments import MARKDOWN, fragment_rows

    harmful = {"text": "i will stab you and burn your house down tonight", "categories": {"violence": 1, "hate": None}}
    benign = {"text": "the bus was late again so i walked to work in the rain", "categories": {"violence": 0, "hate": None}}
    rows = fragment_rows([harmful, benign] * 20, ["violence", "hate"], 200, seed=1)
    assert len(rows) > 20
    bare = {m.format("") for m in MARKDOWN}
    for row in rows:
        assert "stab" not in row["text"] and "burn" not in row["text"]
        assert row["categories"].get("violence") == 0, row  # a prefix of harmless text is harmless
        if benign["text"].startswith(row["text"]):
            assert row["categories"]["hate"] is None  # what the source never judged stays unknown
        words = row["text"].split()
        assert 1 <= len(words) <= 30 + max(len(b.split()) for b in bare), row
    assert any(len(r["text"].split()) <= 2 for r in rows), "short prefixes (the stream's first checks) are there"
    assert any(r["text"].startswith("was late") for r in rows), "and windows from mid-text (its later checks)"


def test_opener_rows_put_an_assistants_opener_before_harmful_and_harmless_rows_and_keep_their_labels():
    from training.moderation_openers import OPENERS, opener_rows

    harmful = {"text": "i will stab you and burn your house down tonight", "categories": {"violence": 1, "hate": None}}
    benign = {"text": "the bus was late again so i walked to work in the rain", "categories": {"violence": 0, "hate": None}}
    rows = opener_rows([harmful, benign] * 50, ["violence", "hate"], 90, seed=1)
    assert len(rows) == 90
    for row in rows:
        opener = next(o for o in OPENERS if row["text"].startswith(o))
        body = row["text"][len(opener):]
        if body == harmful["text"]:
            assert row["categories"] == {"violence": 1, "hate": None}, "the harm behind the opener keeps its label"
        elif body == benign["text"]:
            assert row["categories"] == {"violence": 0, "hate": None}
        else:  # assistant-style prose: known harmless in every category
            assert row["categories"] == {"violence": 0, "hate": 0}, row
    bodies = [next(r["text"][len(o):] for o in OPENERS if r["text"].startswith(o)) for r in rows]
    assert bodies.count(harmful["text"]) == 30 and bodies.count(benign["text"]) == 30, \
        "two thirds are harmless, so the opener itself does not read as harm"


def test_the_build_script_makes_a_fewer_layer_variant_elsewhere(tmp_path, monkeypatch):
    import training.moderation as stage
    from training import make_moderation_model as build

    calls = []
    monkeypatch.setattr(build, "DATA_DIR", tmp_path / "data")
    monkeypatch.setattr(stage, "train_moderation", lambda data, out, config: calls.append((out, config)) or
                        {"per_category": {}})
    build.main(["--encoder-layers", "2", "--out", str(tmp_path / "l2")])
    (out, config), = calls
    assert out == tmp_path / "l2"
    assert config.encoder_layers == 2
    assert {k: getattr(config, k) for k in build.SHIPPED if k != "encoder_layers"} == \
        {k: v for k, v in build.SHIPPED.items() if k != "encoder_layers"}
    assert (tmp_path / "data" / "train.jsonl").is_file()
    with pytest.raises(SystemExit):
        build.main(["--encoder-layers", "9", "--out", str(tmp_path / "l9")])
    assert len(calls) == 1
