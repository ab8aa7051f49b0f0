"""Importing prompts as a manager lives it: JSONL and CSV files, every problem by line, nothing half-done."""

import io
import json
import resource

import pytest

from annotation.imports import ImportFailed, prompts_import, prompts_import_records
from annotation.models import Completion, Demonstration, Prompt, ReviewState
from annotation.selectors import approved_demonstrations
from tests.annotation.helpers import prompt


def jsonl(*records) -> io.BytesIO:
    return io.BytesIO("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode())


def test_a_jsonl_file_imports_text_messages_answers_and_completions(project, alice):
    upload = jsonl(
        {"prompt": "What is DNS?", "metadata": {"topic": "networks"}},
        {"text": "Name a prime", "answer": "Seven."},
        {"messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"}],
         "completions": ["Hello!", "Hey", "Hi there", "Greetings"]},
    )
    report = prompts_import(project=project, stream=upload, filename="prompts.jsonl", user=alice)

    assert (report.created, report.duplicates, report.lines) == (3, [], 3)
    dns, _prime, hi = Prompt.objects.filter(project=project).order_by("id")
    assert dns.messages == [{"role": "user", "content": "What is DNS?"}] and dns.metadata == {"topic": "networks"}
    assert list(approved_demonstrations(project).values_list("content", flat=True)) == ["Seven."]
    assert Demonstration.objects.get().review_state == ReviewState.APPROVED
    assert hi.messages[0]["role"] == "system" and Completion.objects.filter(prompt=hi).count() == 4


def test_a_file_with_problems_names_each_and_writes_nothing(project, alice):
    upload = jsonl(
        {"prompt": "fine"},
        {"prompt": ""},
        {"prompt": "also fine"},
        {"text": "fine too"},
        {"messages": "hello"},
        {"prompt": "ok"},
        "{not json",
    )
    with pytest.raises(ImportFailed) as failed:
        prompts_import(project=project, stream=upload, filename="bad.jsonl", user=alice)

    problems = failed.value.problems
    assert len(problems) == 3
    assert problems[0] == "line 2, field 'prompt': must be non-empty text"
    assert problems[1].startswith("line 5, field 'messages': must be a non-empty list")
    assert problems[2].startswith("line 7: not valid JSON")
    assert "3 problems" in str(failed.value)
    assert not Prompt.objects.filter(project=project).exists()


def test_problems_after_the_first_chunk_roll_back_the_written_chunks(project, alice):
    records = [{"prompt": f"question {i}"} for i in range(2500)] + [{"prompt": 42}]
    with pytest.raises(ImportFailed, match="1 problem"):
        prompts_import(project=project, stream=jsonl(*records), filename="big.jsonl", user=alice)
    assert not Prompt.objects.filter(project=project).exists()


def test_duplicates_in_the_file_and_in_the_project_are_reported_not_added(project, alice):
    prompt(project, "Already here")
    upload = jsonl({"prompt": "New one"}, {"prompt": "already   HERE"}, {"text": "new one"}, {"prompt": "Another"})

    report = prompts_import(project=project, stream=upload, filename="p.jsonl", user=alice)

    assert report.created == 2
    assert report.duplicates == [(2, "already in the project"), (3, "same prompt as line 1")]
    assert Prompt.objects.filter(project=project).count() == 3


def test_a_csv_file_imports_with_json_cells_and_quoted_newlines(project, alice):
    upload = io.BytesIO(
        b'prompt,metadata,answer\n'
        b'"Write a haiku\nabout rain",{"lang": "en"},\n'
        b'Capital of France?,,Paris.\n'
    )
    report = prompts_import(project=project, stream=upload, filename="prompts.csv", user=alice)
    assert report.created == 2
    haiku = Prompt.objects.get(project=project, metadata={"lang": "en"})
    assert haiku.text == "Write a haiku\nabout rain"
    assert Demonstration.objects.get().content == "Paris."


def test_csv_problems_name_the_line_and_column(project, alice):
    upload = io.BytesIO(b'text,metadata\nfine,\n,\n"ok",{broken\nx,"[1]"\n')
    with pytest.raises(ImportFailed) as failed:
        prompts_import(project=project, stream=upload, filename="bad.csv", user=alice)
    assert failed.value.problems == [
        "line 4, field 'metadata': must be JSON",
        "line 5, field 'metadata': must be an object",
    ]
    assert not Prompt.objects.exists()


def test_a_csv_without_a_prompt_column_is_refused(project, alice):
    with pytest.raises(ImportFailed, match="nothing was imported") as failed:
        prompts_import(project=project, stream=io.BytesIO(b"question\nhi\n"), filename="p.csv", user=alice)
    assert "needs a 'prompt', 'text' or 'messages' column" in failed.value.problems[0]


def test_bad_utf8_is_reported_with_line_and_byte_offset(project, alice):
    upload = io.BytesIO(b'{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n')
    with pytest.raises(ImportFailed) as failed:
        prompts_import(project=project, stream=upload, filename="latin1.jsonl", user=alice)
    assert failed.value.problems == ["line 2: not valid UTF-8 (byte 32 of the file); save the file as UTF-8"]


def test_the_format_is_guessed_from_the_content_without_an_extension(project, alice):
    report = prompts_import(project=project, stream=jsonl({"prompt": "guess"}), filename="upload", user=alice)
    assert report.created == 1
    report = prompts_import(project=project, stream=io.BytesIO(b"\xef\xbb\xbfprompt\nbom csv\n"), filename="x",
                            user=alice)
    assert report.created == 1


def test_an_empty_file_is_a_clear_failure(project, alice):
    with pytest.raises(ImportFailed, match="nothing was imported") as failed:
        prompts_import(project=project, stream=io.BytesIO(b""), filename="empty.jsonl", user=alice)
    assert failed.value.problems == ["the file is empty"]


def test_records_from_the_api_follow_the_same_rules(project, alice):
    report = prompts_import_records(project=project, records=[{"prompt": "a"}, {"prompt": "A"}], user=alice)
    assert (report.created, report.duplicates) == (1, [(2, "same prompt as line 1")])
    with pytest.raises(ImportFailed) as failed:
        prompts_import_records(project=project, records=[{"prompt": "b"}, "c"], user=alice)
    assert failed.value.problems == ["line 2: must be an object with a 'prompt', 'text' or 'messages' field"]
    assert Prompt.objects.count() == 1


@pytest.mark.slow
def test_a_100k_line_file_imports_streaming_with_progress(project, alice, tmp_path):
    path = tmp_path / "big.jsonl"
    with path.open("w") as out:
        for i in range(100_000):
            out.write(json.dumps({"prompt": f"Question number {i}: how do I sort a list?"}) + "\n")
    seen = []
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    with path.open("rb") as stream:
        report = prompts_import(project=project, stream=stream, filename=path.name, user=alice, progress=seen.append)

    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert report.created == 100_000 and report.lines == 100_000
    assert Prompt.objects.filter(project=project).count() == 100_000
    assert seen[:3] == [1000, 2000, 3000] and seen[-1] == 100_000
    assert grown_mb < 150, f"peak memory grew by {grown_mb:.0f} MB"


def test_an_imported_answer_fills_a_demonstration_slot(project, alice, bob):
    upload = jsonl({"prompt": "Answered already", "answer": "Yes."}, {"prompt": "Still open"})
    prompts_import(project=project, stream=upload, filename="p.jsonl", user=alice)

    from annotation.queue import task_next

    task = task_next(project=project, user=bob, kind="demonstration")
    assert task.prompt.text == "Still open"


def test_a_hopeless_file_lists_the_first_problems_and_counts_them_all(project, alice):
    upload = jsonl(*[{"prompt": ""} for _ in range(250)])
    with pytest.raises(ImportFailed, match="250 problems") as failed:
        prompts_import(project=project, stream=upload, filename="bad.jsonl", user=alice)
    assert len(failed.value.problems) == 201 and failed.value.problems[-1] == "... and 50 more problems"
