"""Before its first step a run says what it is doing: loading the model, tokenizing (with a count),
evaluating the untrained model (issue 16, item 4)."""

import json
import re
import shutil
from datetime import timedelta

import pytest
from django.utils import timezone

from training import runs
from training.execution import DbReporter
from training.models import TrainingRun
from training.reporting import ListReporter, RunCancelled
from training.sft import train_sft


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path, settings):
    settings.DATA_DIR = tmp_path / "data"


def test_sft_reports_loading_tokenizing_and_evaluating_before_its_steps(tiny_model_dir, tmp_path):
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"What is {i} plus one?"},
        {"role": "assistant", "content": f"{i} plus one is {i + 1}."}]}) + "\n" for i in range(20)))
    reporter = ListReporter()
    train_sft(shutil.copytree(tiny_model_dir, tmp_path / "parent"), data, tmp_path / "out",
              {"max_steps": 2, "batch_size": 4, "micro_batch_size": 2, "eval_fraction": 0.2, "max_length": 64,
               "checkpoint_every": 0}, reporter)
    names = [name for name, _, _ in reporter.phases]
    assert names[0] == "loading model"
    tokenized = [(done, total) for name, done, total in reporter.phases if name == "tokenizing examples"]
    assert tokenized[0] == (0, 16) and tokenized[-1] == (16, 16)  # 20 transcripts, 4 held out
    assert names[-1] == "evaluating before training on 4 held-out examples"
    assert reporter.steps[0] == (1, 2)  # the phases all came before the first step


def test_counted_reports_about_a_hundred_times_and_yields_everything():
    reporter = ListReporter()
    assert list(reporter.counted("tokenizing rankings", range(1307))) == list(range(1307))
    assert reporter.phases[0] == ("tokenizing rankings", 0, 1307)
    assert reporter.phases[-1] == ("tokenizing rankings", 1307, 1307)
    assert 100 <= len(reporter.phases) <= 110


def running(project, alice):
    run = runs.run_create(kind="smoke", project=project, created_by=alice)
    token = runs.run_claim(run_id=run.pk, worker="w1")
    return run, token


@pytest.mark.django_db
def test_the_run_page_shows_the_phase_with_its_own_progress_until_steps_run(client, project, alice):
    run, token = running(project, alice)
    reporter = DbReporter(run.pk, token)
    reporter.phase("loading model")
    started = TrainingRun.objects.get(pk=run.pk).phase["since"]
    TrainingRun.objects.filter(pk=run.pk).update(phase={"name": "loading model", "done": 0, "total": 0,
                                                        "since": (timezone.now() - timedelta(seconds=42)).isoformat()})
    client.force_login(alice)
    page = client.get(f"/projects/{project.slug}/runs/{run.pk}/").content.decode()
    assert started and re.search(r"Loading model</strong> <span class=\"muted\">· 4\ds so far", page)

    reporter.phase("tokenizing rankings", 300, 1307)
    listed = client.get(f"/projects/{project.slug}/runs/").content.decode()
    row = listed[listed.index(f'data-run="{run.pk}"'):]
    assert "Tokenizing rankings</strong> · 300 of 1,307" in row and '<progress max="100" value="23"' in row

    reporter.progress(1, 10)
    page = client.get(f"/projects/{project.slug}/runs/{run.pk}/").content.decode()
    assert "data-run-phase" not in page and "step 1 of 10" in page


@pytest.mark.django_db
def test_cancelling_while_the_model_loads_stops_the_run_at_the_next_phase(project, alice):
    run, token = running(project, alice)
    reporter = DbReporter(run.pk, token)
    reporter.phase("loading model")
    runs.run_cancel(run=TrainingRun.objects.get(pk=run.pk))
    with pytest.raises(RunCancelled):
        reporter.phase("tokenizing examples", 0, 100)
