"""Evidence in the training data: exports and snapshots carry a prompt's passages, the model reads them
in the prompt, and a labeler's "not supported by the evidence" flag reaches the reward model's data."""

import io
import json

import pyarrow.parquet as pq

from annotation.evidence import HEADER, evidence_clean, messages_with_evidence
from annotation.models import Completion, Demonstration, Ranking
from tests.training import labels
from training import exports
from training.chat_data import read_conversations
from training.reward_data import read_rankings
from training.runners import read_prompts
from training.snapshots import snapshot_file, snapshot_freeze

PASSAGES = evidence_clean([{"title": "Eggs", "text": "A soft egg boils for six minutes."},
                           {"title": "Eggs", "section": "Hard", "text": "A hard egg boils for ten minutes."}])


def body_of(response) -> bytes:
    return b"".join(response.streaming_content)


def egg_ranking(project, author):
    """A prompt with passages, ranked: the supported answer first, the invented one flagged and last."""
    prompt = labels.prompt(project, "How long does a soft egg boil?", evidence=PASSAGES)
    supported = Completion.objects.create(prompt=prompt, text="Six minutes [1].")
    invented = Completion.objects.create(prompt=prompt, text="Forty minutes [2].")
    return Ranking.objects.create(prompt=prompt, author=author, order=[[supported.pk], [invented.pk]],
                                  flags={str(invented.pk): ["not_supported"]}, review_state="approved")


def test_a_not_supported_flag_reaches_the_exports_with_the_passages(project, charlie):
    egg_ranking(project, charlie)

    ranking = json.loads(body_of(exports.export_response(project, "rankings")))
    assert ranking["completions"] == ["Six minutes [1].", "Forty minutes [2]."]
    assert ranking["flags"] == [[], ["not_supported"]]
    assert [p["text"] for p in ranking["evidence"]] == [p["text"] for p in PASSAGES]
    system, question = ranking["prompt"]
    assert system["role"] == "system" and HEADER in system["content"]
    assert "[1] Eggs\nA soft egg boils for six minutes." in system["content"]
    assert "[2] Eggs — Hard\nA hard egg boils for ten minutes." in system["content"]
    assert question == {"role": "user", "content": "How long does a soft egg boil?"}

    pair = json.loads(body_of(exports.export_response(project, "pairs")))
    assert pair["rejected"] == "Forty minutes [2]." and pair["rejected_flags"] == ["not_supported"]
    assert pair["evidence"] == ranking["evidence"] and pair["prompt"] == ranking["prompt"]


def test_the_reward_snapshot_keeps_the_flag_and_the_reward_model_scores_answers_with_their_passages(
        project, charlie, alice, tiny_model_dir):
    from transformers import AutoTokenizer

    from training.reward_data import encode_ranking, ensure_chat_template

    egg_ranking(project, charlie)

    snapshot = snapshot_freeze(project=project, kind="preference", created_by=alice)

    row = json.loads(snapshot_file(snapshot).read_text())
    assert row["flags"] == [[], ["not_supported"]] and len(row["evidence"]) == 2
    pair = json.loads(snapshot_file(snapshot, "pairs.jsonl").read_text())
    assert pair["rejected_flags"] == ["not_supported"]
    (ranking,) = read_rankings(snapshot_file(snapshot))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ensure_chat_template(tokenizer)
    scored = tokenizer.decode(encode_ranking(tokenizer, ranking.prompt, ranking.completions, 512).sequences[1])
    assert "A soft egg boils for six minutes." in scored and scored.rstrip().endswith("Forty minutes [2].<|im_end|>")


def test_a_file_with_an_evidence_column_but_a_bare_prompt_gets_the_same_rendering(tmp_path):
    bare = [{"role": "user", "content": "Soft egg?"}]
    path = tmp_path / "rankings.jsonl"
    path.write_text(json.dumps({"prompt": bare, "completions": ["6 [1]", "40"], "ranks": [0, 1],
                                "evidence": PASSAGES}) + "\n")
    (ranking,) = read_rankings(path)
    rendered = messages_with_evidence(bare, PASSAGES)
    assert ranking.prompt == rendered and len(rendered) == 2


def test_sft_data_and_sampling_prompts_carry_the_passages(project, bob, alice):
    prompt = labels.prompt(project, "Hard egg?", evidence=PASSAGES)
    Demonstration.objects.create(prompt=prompt, author=bob, content="Ten minutes [2].", review_state="approved")
    labels.prompt(project, "No evidence here")

    sft = snapshot_freeze(project=project, kind="sft", created_by=alice)
    (conversation,) = read_conversations(snapshot_file(sft))
    assert conversation[0]["role"] == "system" and "A hard egg boils for ten minutes." in conversation[0]["content"]
    assert conversation[-1] == {"role": "assistant", "content": "Ten minutes [2]."}

    prompts = snapshot_freeze(project=project, kind="prompts", created_by=alice)
    given = dict(read_prompts(snapshot_file(prompts)))
    assert "A hard egg boils for ten minutes." in given[prompt.pk][0]["content"]
    assert [m["role"] for m in given[prompt.pk]] == ["system", "user"]
    assert [m["role"] for m in next(v for k, v in given.items() if k != prompt.pk)] == ["user"]


def test_parquet_keeps_the_evidence_of_rows_after_a_group_without_any(project, charlie):
    labels.ranked(project, charlie, "Plain", ["x", "y"], [[0], [1]])
    egg_ranking(project, charlie)

    parquet = b"".join(exports.parquet_chunks(exports.ranking_rows(project), rows_per_group=1))
    rows = pq.read_table(io.BytesIO(parquet)).to_pylist()
    assert rows[0]["evidence"] is None
    assert [p["text"] for p in rows[1]["evidence"]] == [p["text"] for p in PASSAGES]
    assert rows[1]["flags"] == [[], ["not_supported"]]
