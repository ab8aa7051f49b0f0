"""Issue 13 item 5: uploads have a size limit per kind (413) and a single over-long line is a line error."""

import io

import pytest

from annotation.models import Prompt
from tests.security.helpers import api_as, base
from training.models import Corpus


@pytest.fixture(autouse=True)
def _small_limits(settings, tmp_path):
    settings.DATA_DIR = tmp_path / "data"
    settings.UPLOAD_LIMITS = {"import": 64 * 1024, "corpus": 64 * 1024}
    settings.MAX_IMPORT_LINE_BYTES = 4096
    settings.MAX_CORPUS_LINE_BYTES = 4096
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 32 * 1024


def _file(name: str, body: bytes):
    f = io.BytesIO(body)
    f.name = name
    return f


BIG = b"".join(b'{"prompt": "question %d"}\n' % i for i in range(5000))  # ~130 KB


def test_an_import_over_the_limit_is_a_413_on_the_page(client, project, alice):
    client.force_login(alice)
    response = client.post(f"/projects/{project.slug}/import/upload/", {"file": _file("p.jsonl", BIG)})
    assert response.status_code == 413
    assert "TUNELOOP_MAX_IMPORT_BYTES" in response.content.decode()
    assert not Prompt.objects.exists()


def test_an_import_over_the_limit_is_a_413_in_the_api(project, alice):
    response = api_as(alice).post(f"{base(project)}/prompts/upload/", {"file": _file("p.jsonl", BIG)},
                                  format="multipart")
    assert response.status_code == 413 and "TUNELOOP_MAX_IMPORT_BYTES" in response.json()["detail"]
    assert not Prompt.objects.exists()


@pytest.mark.parametrize("name", ["p.jsonl", "p.csv"])
def test_a_single_over_long_prompt_line_is_a_line_error(project, alice, name):
    long = "x" * 10_000
    body = (f'{{"prompt": "short"}}\n{{"prompt": "{long}"}}\n{{"prompt": "after"}}\n' if name.endswith("jsonl")
            else f"prompt\nshort\n{long}\nafter\n").encode()
    response = api_as(alice).post(f"{base(project)}/prompts/upload/", {"file": _file(name, body)}, format="multipart")
    assert response.status_code == 400
    assert [p for p in response.json()["problems"] if p.startswith("line") and "longer than 4 KB" in p] == \
        [p for p in response.json()["problems"] if "longer" in p] != []
    assert any(p.startswith("line 2:") or p.startswith("line 3:") for p in response.json()["problems"])
    assert not Prompt.objects.exists()


def test_a_small_import_still_works(project, alice):
    response = api_as(alice).post(f"{base(project)}/prompts/upload/",
                                  {"file": _file("p.jsonl", b'{"prompt": "hello"}\n')}, format="multipart")
    assert response.status_code == 201 and Prompt.objects.count() == 1


def test_a_corpus_over_the_limit_is_a_413(client, project, alice):
    client.force_login(alice)
    response = client.post(f"/projects/{project.slug}/corpora/", {"file": _file("c.txt", b"word " * 20_000)})
    assert response.status_code == 413 and "TUNELOOP_MAX_CORPUS_BYTES" in response.content.decode()
    assert not Corpus.objects.exists()


def test_an_over_long_corpus_line_names_the_line(client, project, alice):
    client.force_login(alice)
    body = b"first document\n" + b"y" * 10_000 + b"\nlast\n"
    response = client.post(f"/projects/{project.slug}/corpora/", {"file": _file("c.txt", body)})
    assert "c.txt, line 2: longer than 4 KB" in response.content.decode()
    assert not Corpus.objects.exists()


def test_a_json_body_over_the_limit_is_a_413(project, alice):
    records = [{"prompt": f"question {i}"} for i in range(2000)]
    response = api_as(alice).post(f"{base(project)}/prompts/", {"records": records}, format="json")
    assert response.status_code == 413 and "TUNELOOP_MAX_BODY_BYTES" in response.json()["detail"]
    assert not Prompt.objects.exists()


def test_an_over_long_record_in_the_json_import_is_a_record_error(project, alice):
    records = [{"prompt": "short"}, {"prompt": "z" * 10_000}]
    response = api_as(alice).post(f"{base(project)}/prompts/", {"records": records}, format="json")
    assert response.status_code == 400
    assert [p for p in response.json()["problems"] if p.startswith("line 2: longer than 4 KB")]
    assert not Prompt.objects.exists()
