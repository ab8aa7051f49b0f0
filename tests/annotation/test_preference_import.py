"""Importing preference data as a manager lives it: public datasets' shapes in, rankings out, traceable,
in the reward snapshot; a bad line names itself and nothing is half-imported."""

from __future__ import annotations

import html
import io
import json
import threading

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError

from annotation.imports import prompts_import
from annotation.models import Prompt, Ranking, RankingSource, ReviewState
from annotation.review import review_queue
from annotation.selectors import rankings_for_training

HH_CHOSEN = "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: Capital of France?\n\nAssistant: Paris."
HH_REJECTED = "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: Capital of France?\n\nAssistant: Rome."
USER = {"role": "user", "content": "Capital of France?"}


def jsonl(*records) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()


def parquet(records: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records), out)
    return out.getvalue()


def upload(client, project, name: str, content: bytes, **extra) -> str:
    """The import page as the manager's browser posts it (htmx): the text the manager reads."""
    response = client.post(f"/projects/{project.slug}/import/upload/",
                           {"kind": "preferences", "file": SimpleUploadedFile(name, content), **extra},
                           HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def ranked_texts(ranking: Ranking) -> list[list[str]]:
    texts = {c.pk: c.text for c in ranking.prompt.completions.all()}
    return [[texts[i] for i in tier] for tier in ranking.order]


def reward_snapshot_rows(project, alice) -> list[dict]:
    from training.snapshots import snapshot_file, snapshot_freeze

    snapshot = snapshot_freeze(project=project, kind="preference", created_by=alice)
    return [json.loads(line) for line in snapshot_file(snapshot).read_text().splitlines()]


@pytest.fixture
def manager(client, alice):
    client.force_login(alice)
    return client


FORMATS = {
    "trl standard pairs": (
        {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Rome."},
        [[USER]], [["Paris."], ["Rome."]]),
    "trl conversational pairs": (
        {"prompt": [USER], "chosen": [{"role": "assistant", "content": "Paris."}],
         "rejected": [{"role": "assistant", "content": "Rome."}]},
        [[USER]], [["Paris."], ["Rome."]]),
    "implicit prompt (full conversations)": (
        {"chosen": [USER, {"role": "assistant", "content": "Paris."}],
         "rejected": [USER, {"role": "assistant", "content": "Rome."}]},
        [[USER]], [["Paris."], ["Rome."]]),
    "raw two-transcript pairs": (
        {"chosen": HH_CHOSEN, "rejected": HH_REJECTED},
        [[{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"}, USER]],
        [["Paris."], ["Rome."]]),
    "rankings with ties": (
        {"messages": [USER], "completions": ["Paris.", "Lyon.", "Rome."], "ranks": [0, 1, 1]},
        [[USER]], [["Paris."], ["Lyon.", "Rome."]]),
    "scored completions": (
        {"prompt": "Capital of France?", "completions": [{"text": "Rome.", "score": 2}, {"text": "Paris.", "score": 9.5},
                                                         {"text": "Lyon.", "score": 2}]},
        [[USER]], [["Paris."], ["Rome.", "Lyon."]]),
}


@pytest.mark.parametrize("shape", FORMATS)
def test_each_shape_imports_through_the_page_as_a_traceable_ranking_in_the_reward_snapshot(manager, project, alice,
                                                                                           shape):
    record, prompts, tiers = FORMATS[shape]
    body = upload(manager, project, "prefs.jsonl", jsonl({"prompt": "Warm-up", "chosen": "a", "rejected": "b"},
                                                         record))

    assert "Imported 2 rankings from prefs.jsonl" in body
    ranking = Ranking.objects.get(import_line=2)
    assert [ranking.prompt.messages] == prompts and ranked_texts(ranking) == tiers
    assert (ranking.source, ranking.import_file, ranking.author) == (RankingSource.IMPORT, "prefs.jsonl", alice)
    assert ranking in rankings_for_training(project)  # counts as a label, not waiting for review
    rows = reward_snapshot_rows(project, alice)
    assert len(rows) == 2 and rows[1]["prompt"] == prompts[0]
    assert rows[1]["completions"] == [t for tier in tiers for t in tier]


BAD_LINES = {
    "pairs": ({"prompt": "Hi", "chosen": "Hello", "rejected": ""}, "line 2, field 'rejected': must be non-empty text"),
    "conversational": ({"prompt": [USER], "chosen": [{"role": "user", "content": "x"}], "rejected": "y"},
                       "line 2, field 'chosen': must end with an assistant message"),
    "transcripts": ({"chosen": HH_CHOSEN, "rejected": "\n\nHuman: Other\n\nAssistant: Rome."},
                    "line 2, field 'rejected': does not share the conversation of 'chosen'"),
    "rankings": ({"prompt": "Hi", "completions": ["a", "b"], "ranks": [0]},
                 "line 2, field 'ranks': must be a list of 2 ranks"),
    "scored": ({"prompt": "Hi", "completions": [{"text": "a", "score": "high"}, {"text": "b", "score": 1}]},
               "line 2, field 'completions[0].score': must be a number"),
    "neither": ({"prompt": "Hi", "answer": "a"}, "line 2: needs 'chosen' and 'rejected' (a pair) or 'completions'"),
}


@pytest.mark.parametrize("shape", BAD_LINES)
def test_a_bad_line_of_each_shape_names_line_and_field_and_imports_nothing(manager, project, shape):
    record, problem = BAD_LINES[shape]
    body = upload(manager, project, "bad.jsonl", jsonl({"prompt": "Fine", "chosen": "a", "rejected": "b"}, record))

    assert problem in body and "nothing was imported" in body.lower()
    assert not Ranking.objects.exists() and not Prompt.objects.exists()


def test_csv_and_parquet_files_import_with_a_bad_row_reported(manager, project, alice):
    csv_file = (b'prompt,chosen,rejected\n"Capital of France?",Paris.,Rome.\n'
                b'"Name a prime","[{""role"": ""assistant"", ""content"": ""7""}]",4\n')
    assert "Imported 2 rankings" in upload(manager, project, "pairs.csv", csv_file)
    rows = [{"prompt": "Largest ocean?", "chosen": "Pacific.", "rejected": "Arctic."},
            {"prompt": "Smallest prime?", "chosen": "2", "rejected": "1"}]
    assert "Imported 2 rankings" in upload(manager, project, "pairs.parquet", parquet(rows))

    prime = Ranking.objects.get(import_file="pairs.csv", import_line=3)
    assert ranked_texts(prime) == [["7"], ["4"]]
    ocean = Ranking.objects.get(import_file="pairs.parquet", import_line=1)
    assert ocean.prompt.text == "Largest ocean?" and ranked_texts(ocean) == [["Pacific."], ["Arctic."]]
    assert len(reward_snapshot_rows(project, alice)) == 4

    bad_csv = b'prompt,chosen,rejected\nOk,a,b\nHi,,b\n'
    assert "line 3, field 'chosen'" in upload(manager, project, "bad.csv", bad_csv)
    bad_rows = [{"prompt": "Fine?", "chosen": "a", "rejected": "b"}, {"prompt": "Hi", "chosen": "a", "rejected": None}]
    assert "line 2, field 'rejected': is missing" in upload(manager, project, "bad.parquet",
                                                            parquet(bad_rows))
    assert Ranking.objects.count() == 4


def test_the_api_imports_records_warns_about_unread_fields_and_can_send_them_to_review(manager, project, alice):
    records = [{"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Rome.", "source": "hh"},
               {"prompt": "Capital of France?", "chosen": "Paris!", "rejected": "Paris?", "source": "hh"}]
    response = manager.post(f"/api/projects/{project.slug}/preferences/", {"records": records, "review": True},
                            content_type="application/json")

    assert response.status_code == 201, response.content
    assert response.json()["created"] == 2
    assert response.json()["warnings"] == [
        "field 'source' is not read by this import and was ignored on 2 lines (first: line 1)"]
    assert Prompt.objects.filter(project=project).count() == 1  # one prompt, two rankings
    assert list(review_queue(project=project, kind="ranking").values_list("import_line", flat=True)) == [1, 2]
    assert not rankings_for_training(project).exists()
    review_page = html.unescape(manager.get(f"/projects/{project.slug}/review/?kind=ranking").content.decode())
    assert "Paris." in review_page and "Rome." in review_page  # the reviewer sees the imported ranking

    bad = manager.post(f"/api/projects/{project.slug}/preferences/", {"records": [{"chosen": "only"}]},
                       content_type="application/json")
    assert bad.status_code == 400
    assert bad.json()["problems"] == ["line 1, field 'rejected': is missing (a pair needs both 'chosen' and 'rejected')"]


def test_a_labeler_cannot_import_preferences(client, project, bob):
    client.force_login(bob)
    response = client.post(f"/api/projects/{project.slug}/preferences/", {"records": [{"chosen": "a"}]},
                           content_type="application/json")
    assert response.status_code == 403 and not Ranking.objects.exists()


def test_the_prompt_import_refuses_pairs_and_points_to_the_preference_import(project, alice):
    from annotation.imports import ImportFailed

    stream = io.BytesIO(jsonl({"messages": [USER], "chosen": "Paris.", "rejected": "Rome."}))
    with pytest.raises(ImportFailed) as failed:
        prompts_import(project=project, stream=stream, filename="prefs.jsonl", user=alice)
    assert "line 1, field 'chosen': is preference data" in failed.value.problems[0]
    assert "use the preference import" in failed.value.problems[0]

    report = prompts_import(project=project, stream=io.BytesIO(jsonl({"prompt": "Hi", "topic": "x"})),
                            filename="p.jsonl", user=alice)
    assert report.warnings == ["field 'topic' is not read by this import and was ignored on 1 line (first: line 1)"]


def test_imported_rankings_take_the_ranking_slots_of_their_prompt(project, alice, bob):
    from annotation.preference_import import preferences_import_records
    from annotation.queue import task_next

    record = {"prompt": "Four answers", "completions": ["a", "b", "c", "d"], "ranks": [0, 1, 2, 3]}
    preferences_import_records(project=project, records=[record], user=alice)

    prompt = Prompt.objects.get(project=project)
    assert (prompt.rankings_taken, prompt.ranking_open) == (1, False)  # labels_per_item is 1: already labelled
    assert task_next(project=project, user=bob, kind="ranking") is None


@pytest.mark.django_db(transaction=True)
def test_a_big_preference_file_imports_in_the_background_with_progress(manager, project, monkeypatch):
    monkeypatch.setattr("annotation.views_import.INLINE_BYTES", 100)
    content = jsonl(*({"prompt": f"Question {i}?", "chosen": "yes", "rejected": "no"} for i in range(300)))
    body = upload(manager, project, "big.jsonl", content)
    assert "of 300 lines" in body
    token = body.split('data-import-job="')[1].split('"')[0]
    for thread in threading.enumerate():
        if thread.name == f"import-{token[:8]}":
            thread.join(timeout=60)
    body = manager.get(f"/projects/{project.slug}/import/{token}/", HTTP_HX_REQUEST="true").content.decode()
    assert "Imported 300 rankings" in body
    assert Ranking.objects.filter(source=RankingSource.IMPORT).count() == 300


def test_the_management_command_imports_a_file_and_lists_problems(project, alice, bob, tmp_path, capsys):
    good = tmp_path / "pairs.jsonl"
    good.write_bytes(jsonl({"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."}))
    call_command("import_preferences", project.slug, str(good), user="alice", review=True)
    assert "imported 1 rankings" in capsys.readouterr().out
    ranking = Ranking.objects.get()
    assert (ranking.import_file, ranking.needs_review, ranking.review_state) == ("pairs.jsonl", True, ReviewState.PENDING)

    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(jsonl({"prompt": "Hi", "chosen": "x", "rejected": "y"}, "{oops"))
    with pytest.raises(CommandError, match="line 2: not valid JSON"):
        call_command("import_preferences", project.slug, str(bad), user="alice")
    with pytest.raises(CommandError, match="not a manager"):
        call_command("import_preferences", project.slug, str(good), user="bob")
    assert Ranking.objects.count() == 1


@pytest.mark.slow
def test_100k_pairs_import_streaming_in_bounded_memory_with_progress(project, alice, tmp_path):
    import resource

    from annotation.preference_import import preferences_import

    path = tmp_path / "big.jsonl"
    with path.open("w") as out:
        for i in range(100_000):
            out.write(json.dumps({"prompt": f"Question {i}: which is better?", "chosen": f"Answer {i}, carefully.",
                                  "rejected": "No idea."}) + "\n")
    seen = []
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    with path.open("rb") as stream:
        report = preferences_import(project=project, stream=stream, filename=path.name, user=alice,
                                    progress=seen.append)

    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert report.created == 100_000 and Ranking.objects.filter(prompt__project=project).count() == 100_000
    assert seen[:2] == [1000, 2000] and seen[-1] == 100_000
    assert grown_mb < 150, f"peak memory grew by {grown_mb:.0f} MB"
