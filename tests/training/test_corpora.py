"""Corpus uploads: streamed, counted, and rejected with the offset or line of the problem."""

import pytest

from training.corpus import corpus_path, corpus_upload
from training.errors import TrainingError
from training.models import Corpus


def chunks(data: bytes, size: int = 7):
    return (data[i : i + size] for i in range(0, len(data), size))


def test_a_text_corpus_is_stored_with_its_size_and_line_count(db, project):
    data = "Once upon a time.\nThe cat sat — on the mat.\n\nThe end.\n".encode()
    corpus = corpus_upload(project=project, name="stories.txt", chunks=chunks(data))
    assert corpus.line_count == 4 and corpus.size_bytes == len(data)
    assert corpus_path(corpus).read_text().splitlines() == ["Once upon a time.", "The cat sat — on the mat.", "The end."]


def test_bad_utf8_is_reported_with_its_byte_offset_and_nothing_is_kept(db, project):
    from training.corpus import corpora_dir

    files_before = set(corpora_dir().iterdir())
    data = b"good line\nbad \xff byte\n"
    with pytest.raises(TrainingError, match=r"not valid UTF-8 at byte offset 14"):
        corpus_upload(project=project, name="bad.txt", chunks=chunks(data, 5))
    assert Corpus.objects.count() == 0
    assert set(corpora_dir().iterdir()) == files_before


def test_jsonl_without_text_names_the_line(db, project):
    data = b'{"text": "one"}\n{"text": "two"}\n{"body": "three"}\n'
    with pytest.raises(TrainingError, match=r"docs.jsonl, line 3: field 'text'"):
        corpus_upload(project=project, name="docs.jsonl", chunks=chunks(data))


def test_the_corpora_page_is_for_the_projects_managers_only(client, project, bob, eve, alice):
    client.force_login(eve)
    assert client.get(f"/projects/{project.slug}/corpora/").status_code == 404
    client.force_login(bob)
    assert client.get(f"/projects/{project.slug}/corpora/").status_code == 404
    client.force_login(alice)
    response = client.get(f"/projects/{project.slug}/corpora/")
    assert response.status_code == 200 and b"Start a pre-training run" in response.content


def test_uploading_through_the_page_then_starting_a_run(client, project, alice):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from training.models import RunKind, TrainingRun

    client.force_login(alice)
    upload = SimpleUploadedFile("s.txt", b"a b c\nd e f\n")
    assert client.post(f"/projects/{project.slug}/corpora/", {"file": upload}).status_code == 302
    corpus = Corpus.objects.get()
    response = client.post(f"/projects/{project.slug}/corpora/",
                           {"corpus": corpus.pk, "nproc": 2, "config": '{"max_steps": 5}'})
    assert response.status_code == 302
    run = TrainingRun.objects.get(kind=RunKind.PRETRAIN)
    assert run.corpus == corpus and run.config == {"max_steps": 5, "nproc": 2}
    bad = client.post(f"/projects/{project.slug}/corpora/", {"corpus": corpus.pk, "nproc": 1, "config": '{"layers": 3}'})
    assert b"unknown pre-training setting(s): layers" in bad.content
