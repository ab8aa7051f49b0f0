"""SIGKILL the web process (a real uvicorn) in the middle of an import, of submissions and of
deployments: each is all-or-nothing, every acknowledged label is there, and the restarted server
carries on where the users left off."""

from __future__ import annotations

import io
import shutil
import threading
import time

import httpx
import pytest

from annotation.models import Assignment, AssignmentStatus, Demonstration, Prompt, Role
from annotation.services import membership_set
from annotation.slots import slots_recount
from serving.keys import api_key_create
from serving.models import Deployment
from training.models import VersionKind
from training.registry import model_version_register, version_dir


def client(user, web) -> httpx.Client:
    _, key = api_key_create(user=user, name="fault tests")
    return httpx.Client(base_url=f"{web.url}/api/projects/", headers={"Authorization": f"Bearer {key}"},
                        timeout=60)


def test_a_web_process_killed_during_an_import_imports_nothing_then_the_import_works(web_process, project, alice):
    lines = "".join(f'{{"text": "Imported question number {i}, please answer it well."}}\n' for i in range(40000))
    web = web_process()
    outcome = {}

    def upload():
        try:
            with client(alice, web) as c:
                files = {"file": ("prompts.jsonl", io.BytesIO(lines.encode()), "application/jsonl")}
                outcome["status"] = c.post(f"{project.slug}/prompts/upload/", files=files).status_code
        except httpx.HTTPError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=upload)
    thread.start()
    time.sleep(3)
    web.kill()
    thread.join(timeout=30)

    assert "error" in outcome, f"the kill must land mid-import (the import answered {outcome.get('status')})"
    assert Prompt.objects.filter(project=project).count() == 0  # all or nothing: nothing
    web = web_process()
    with client(alice, web) as c:
        files = {"file": ("prompts.jsonl", io.BytesIO(lines.encode()), "application/jsonl")}
        assert c.post(f"{project.slug}/prompts/upload/", files=files).status_code == 201
    assert Prompt.objects.filter(project=project).count() == 40000


def labelers(project, make_user, n: int):
    users = []
    for i in range(n):
        user = make_user(f"labeler{i}")
        membership_set(project=project, user=user, role=Role.LABELER)
        users.append(user)
    return users


def test_a_web_process_killed_during_submissions_loses_no_acknowledged_label(web_process, project, make_user):
    for i in range(400):
        Prompt.objects.create(project=project, messages=[{"role": "user", "content": f"q{i}"}], normalized_hash=f"h{i}")
    slots_recount(project)
    crowd = labelers(project, make_user, 8)
    web = web_process()
    acknowledged, stop = [], threading.Event()

    def label(user):
        with client(user, web) as c:
            while not stop.is_set():
                try:
                    task = c.get(f"{project.slug}/tasks/next/?kind=demonstration")
                    if task.status_code != 200:
                        return
                    done = c.post(f"{project.slug}/tasks/{task.json()['id']}/demonstration/",
                                  json={"content": f"An answer by {user.username}."})
                    if done.status_code == 201:
                        acknowledged.append(done.json()["id"])
                except httpx.HTTPError:
                    return

    threads = [threading.Thread(target=label, args=(user,)) for user in crowd]
    for thread in threads:
        thread.start()
    wait = time.time() + 60
    while len(acknowledged) < 20 and time.time() < wait:
        time.sleep(0.1)
    web.kill()
    stop.set()
    for thread in threads:
        thread.join(timeout=30)

    assert acknowledged, "labelers were submitting when the server died"
    stored = set(Demonstration.objects.filter(prompt__project=project).values_list("pk", flat=True))
    assert set(acknowledged) <= stored  # every label a labeler saw accepted is there
    submitted = Assignment.objects.filter(project=project, status=AssignmentStatus.SUBMITTED)
    assert submitted.count() == len(stored)  # no assignment marked done without its label, nor the reverse
    counts = dict(Prompt.objects.filter(project=project).values_list("pk", "demonstrations_taken"))
    slots_recount(project)
    assert counts == dict(Prompt.objects.filter(project=project).values_list("pk", "demonstrations_taken"))

    web = web_process()  # the restarted server hands each labeler their open task and takes the answer
    for user in crowd:
        with client(user, web) as c:
            task = c.get(f"{project.slug}/tasks/next/?kind=demonstration")
            assert task.status_code == 200
            assert c.post(f"{project.slug}/tasks/{task.json()['id']}/demonstration/",
                          json={"content": "After the restart."}).status_code == 201
    assert max(counts.values() or [0]) <= project.labels_per_item
    per_prompt = Demonstration.objects.filter(prompt__project=project).values_list("prompt_id", flat=True)
    assert len(per_prompt) == len(set(per_prompt))  # no prompt labelled twice (labels_per_item is 1)


@pytest.fixture
def policies(project, tiny_model_dir):
    made = []
    for i in range(3):
        folder = version_dir(f"{project.slug}-policy-{i}")
        if not folder.exists():
            shutil.copytree(tiny_model_dir, folder)
        made.append(model_version_register(name=folder.name, kind=VersionKind.POLICY, folder=folder, project=project))
    return made


def test_a_web_process_killed_during_deployments_leaves_exactly_one_live(web_process, project, alice, policies):
    web = web_process()
    acknowledged, stop = [], threading.Event()

    def deploy(offset: int):
        with client(alice, web) as c:
            i = offset
            while not stop.is_set():
                try:
                    answer = c.post(f"{project.slug}/deployments/", json={"policy": policies[i % 3].name})
                except httpx.HTTPError:
                    return
                if answer.status_code == 201:
                    acknowledged.append(answer.json()["id"])
                i += 1

    threads = [threading.Thread(target=deploy, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    wait = time.time() + 60
    while len(acknowledged) < 10 and time.time() < wait:
        time.sleep(0.05)
    web.kill()
    stop.set()
    for thread in threads:
        thread.join(timeout=30)

    assert acknowledged
    assert set(acknowledged) <= set(Deployment.objects.filter(project=project).values_list("pk", flat=True))
    assert Deployment.objects.filter(project=project, is_active=True).count() == 1  # the chat has one model
    web = web_process()
    with client(alice, web) as c:
        answer = c.post(f"{project.slug}/deployments/", json={"policy": policies[0].name})
        assert answer.status_code == 201
    live = Deployment.objects.get(project=project, is_active=True)
    assert live.pk == answer.json()["id"] and live.policy == policies[0]
