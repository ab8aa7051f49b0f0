"""Exports stream the current labels in TRL's formats, a chunk of rows at a time."""

import io
import json
import tracemalloc

import pytest
from django.db.models import QuerySet
from django.http import StreamingHttpResponse

from annotation.models import Demonstration, Prompt
from tests.training import labels
from training import exports


def body_of(response) -> bytes:
    return b"".join(response.streaming_content)


def test_an_export_is_a_streaming_download_walked_with_a_chunked_iterator(project, bob, monkeypatch):
    labels.demonstration(project, bob, "What is 2+2?", "4")
    chunk_sizes = []
    real_iterator = QuerySet.iterator

    def spy(self, chunk_size=None):
        chunk_sizes.append(chunk_size)
        return real_iterator(self, chunk_size=chunk_size)

    monkeypatch.setattr(QuerySet, "iterator", spy)

    response = exports.export_response(project, "sft")

    assert isinstance(response, StreamingHttpResponse)
    assert chunk_sizes == [], "nothing is read before the download is consumed"
    rows = [json.loads(line) for line in body_of(response).decode().splitlines()]
    assert chunk_sizes == [exports.CHUNK_SIZE]
    assert rows == [{"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]}]
    assert response["Content-Disposition"] == f'attachment; filename="{project.slug}-sft.jsonl"'


def test_rankings_and_pairs_exports_agree(project, charlie):
    labels.ranked(project, charlie, "Rank", ["a", "b", "c"], [[1], [0, 2]])

    rankings = [json.loads(x) for x in body_of(exports.export_response(project, "rankings")).splitlines()]
    pairs = [json.loads(x) for x in body_of(exports.export_response(project, "pairs")).splitlines()]

    assert rankings[0]["completions"] == ["b", "a", "c"] and rankings[0]["ranks"] == [0, 1, 1]
    assert sorted((p["chosen"], p["rejected"]) for p in pairs) == [("b", "a"), ("b", "c")]


def test_parquet_export_opens_with_pyarrow(project, bob):
    import pyarrow.parquet as pq

    for i in range(3):
        labels.demonstration(project, bob, f"Question {i}?", f"Answer {i}.")

    table = pq.read_table(io.BytesIO(body_of(exports.export_response(project, "sft", file_format="parquet"))))

    assert table.num_rows == 3
    assert table.to_pylist()[2]["messages"][1] == {"role": "assistant", "content": "Answer 2."}


def test_unknown_formats_are_refused_with_the_choices(project):
    from training.errors import TrainingError

    with pytest.raises(TrainingError, match="choose one of sft, rankings"):
        exports.export_response(project, "poems")
    with pytest.raises(TrainingError, match="jsonl or parquet"):
        exports.export_response(project, "sft", file_format="xlsx")


def _add_demonstrations(project, author, n: int, start: int = 0) -> None:
    prompts = Prompt.objects.bulk_create(
        Prompt(project=project, messages=[{"role": "user", "content": f"question {i} " + "x" * 200}],
               normalized_hash=f"{i:064d}")
        for i in range(start, start + n)
    )
    Demonstration.objects.bulk_create(
        Demonstration(prompt=p, author=author, content="answer " + "y" * 300, review_state="approved") for p in prompts
    )


def _peak_bytes_streaming(project) -> tuple[int, int]:
    tracemalloc.start()
    rows = sum(chunk.count(b"\n") for chunk in exports.export_response(project, "sft").streaming_content)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return rows, peak


@pytest.mark.slow
def test_export_memory_stays_flat_as_rows_grow_tenfold(project, bob):
    """Peak memory with 5k rows vs 50k rows: a streamed export must not grow with the row count."""
    _add_demonstrations(project, bob, 5_000)
    rows_small, peak_small = _peak_bytes_streaming(project)
    _add_demonstrations(project, bob, 45_000, start=5_000)
    rows_big, peak_big = _peak_bytes_streaming(project)
    assert (rows_small, rows_big) == (5_000, 50_000)
    assert peak_big < 2 * peak_small, f"peak grew from {peak_small} to {peak_big} bytes"


def test_ranking_flags_reach_the_rankings_pairs_and_parquet_exports(project, charlie):
    import pyarrow.parquet as pq

    labels.ranked(project, charlie, "Plain", ["x", "y"], [[0], [1]])  # no flags: the first row group's types
    ranking = labels.ranked(project, charlie, "Rank", ["a", "b", "c"], [[1], [0, 2]])
    a, c = ranking.order[1]  # the tied, worse tier
    ranking.flags = {str(a): ["unsafe"], str(c): ["factually_wrong", "unsafe"]}
    ranking.save(update_fields=["flags"])

    rankings = [json.loads(x) for x in body_of(exports.export_response(project, "rankings")).splitlines()]
    assert rankings[0]["flags"] == [[], []]
    assert rankings[1]["completions"] == ["b", "a", "c"]
    assert rankings[1]["flags"] == [[], ["unsafe"], ["factually_wrong", "unsafe"]]
    pairs = [json.loads(x) for x in body_of(exports.export_response(project, "pairs")).splitlines()]
    assert {(p["rejected"], tuple(p["rejected_flags"])) for p in pairs if p["chosen"] == "b"} == {
        ("a", ("unsafe",)), ("c", ("factually_wrong", "unsafe"))}
    # one row group per ranking: the flagless first group must not fix the column's type to null
    parquet = b"".join(exports.parquet_chunks(exports.ranking_rows(project), rows_per_group=1))
    assert pq.read_table(io.BytesIO(parquet)).to_pylist()[1]["flags"] == [[], ["unsafe"], ["factually_wrong", "unsafe"]]
