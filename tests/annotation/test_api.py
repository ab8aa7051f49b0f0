"""The annotation REST API as a script author lives it: token auth, import, label, review, members."""

import io

import pytest
from rest_framework.test import APIClient

from annotation.models import Demonstration, Prompt, Role
from annotation.selectors import approved_demonstrations
from serving.keys import api_key_create


def api_as(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(user=user, name='tests')[1]}")
    return client


def base(project) -> str:
    return f"/api/projects/{project.slug}"


def imported(project, manager, records):
    response = api_as(manager).post(f"{base(project)}/prompts/", {"records": records}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_a_labeler_writes_a_demonstration_through_the_api(project, alice, bob):
    project.review_rate = 0
    project.save()
    imported(project, alice, [{"prompt": "What is a monad?"}])
    client = api_as(bob)

    task = client.get(f"{base(project)}/tasks/next/?kind=demonstration")
    assert task.status_code == 200
    body = task.json()
    assert body["prompt"]["text"] == "What is a monad?" and body["completions"] == []
    first = client.post(f"{base(project)}/tasks/{body['id']}/demonstration/", {"content": "A monoid in..."},
                        format="json")
    retry = client.post(f"{base(project)}/tasks/{body['id']}/demonstration/", {"content": "other"}, format="json")

    assert first.status_code == 201 and retry.status_code == 200
    assert retry.json()["id"] == first.json()["id"] and retry.json()["content"] == "A monoid in..."
    assert Demonstration.objects.count() == 1 and approved_demonstrations(project).count() == 1
    assert client.get(f"{base(project)}/tasks/next/?kind=demonstration").status_code == 204


def test_a_labeler_ranks_completions_with_ties_and_flags(project, alice, bob):
    imported(project, alice, [{"prompt": "Say hi", "completions": ["Hi", "Hello", "Yo", "Greetings, human"]}])
    client = api_as(bob)

    task = client.get(f"{base(project)}/tasks/next/?kind=ranking").json()
    ids = sorted(c["id"] for c in task["completions"])
    assert len(ids) == 4
    bad = client.post(f"{base(project)}/tasks/{task['id']}/ranking/", {"order": [[ids[0]], [ids[1]]]}, format="json")
    assert bad.status_code == 400
    assert bad.json() == {"detail": f"completions {ids[2]}, {ids[3]} are not ranked; place every answer"}

    done = client.post(f"{base(project)}/tasks/{task['id']}/ranking/", {
        "order": [[ids[1]], [ids[0], ids[2]], [ids[3]]], "flags": {str(ids[3]): ["not_helpful"]}, "comment": "meh",
    }, format="json")

    assert done.status_code == 201, done.json()
    ranking = done.json()
    assert ranking["order"] == [[ids[1]], [ids[0], ids[2]], [ids[3]]] and len(ranking["pairs"]) == 5
    assert ranking["flags"] == {str(ids[3]): ["not_helpful"]}


def test_a_reviewer_rejects_and_the_item_returns_to_the_queue(project, alice, bob, charlie, dave):
    project.review_rate = 1.0
    project.save()
    imported(project, alice, [{"prompt": "Explain TCP"}])
    task = api_as(bob).get(f"{base(project)}/tasks/next/").json()
    api_as(bob).post(f"{base(project)}/tasks/{task['id']}/demonstration/", {"content": "It is a protocol."},
                     format="json")
    assert api_as(charlie).get(f"{base(project)}/tasks/next/").status_code == 204

    pending = api_as(dave).get(f"{base(project)}/reviews/?kind=demonstration").json()
    assert pending["count"] == 1
    item = pending["results"][0]
    rejected = api_as(dave).post(f"{base(project)}/reviews/demonstration/{item['id']}/reject/",
                                 {"reason": "Too vague"}, format="json")

    assert rejected.status_code == 200 and rejected.json()["review_state"] == "rejected"
    again = api_as(charlie).get(f"{base(project)}/tasks/next/")
    assert again.status_code == 200 and again.json()["prompt"]["text"] == "Explain TCP"
    assert api_as(dave).get(f"{base(project)}/reviews/?kind=demonstration").json()["count"] == 0


def test_a_reviewer_edits_and_the_original_is_kept(project, alice, bob, dave):
    project.review_rate = 1.0
    project.save()
    imported(project, alice, [{"prompt": "Spell it"}])
    task = api_as(bob).get(f"{base(project)}/tasks/next/").json()
    demo = api_as(bob).post(f"{base(project)}/tasks/{task['id']}/demonstration/", {"content": "recieve"},
                            format="json").json()

    edited = api_as(dave).post(f"{base(project)}/reviews/demonstration/{demo['id']}/edit/", {"content": "receive"},
                               format="json").json()

    assert (edited["content"], edited["original_content"], edited["review_state"]) == ("receive", "recieve",
                                                                                         "approved")
    again = api_as(dave).post(f"{base(project)}/reviews/demonstration/{demo['id']}/approve/", {}, format="json")
    assert again.status_code == 200


def test_a_bad_import_lists_problems_and_writes_nothing(project, alice):
    response = api_as(alice).post(f"{base(project)}/prompts/", {"records": [
        {"prompt": "ok"}, {"messages": []}, {"prompt": "fine", "metadata": "x"},
    ]}, format="json")
    assert response.status_code == 400
    assert response.json()["problems"] == [
        "line 2, field 'messages': must be a non-empty list",
        "line 3, field 'metadata': must be an object",
    ]
    assert not Prompt.objects.exists()


def test_a_csv_file_is_uploaded_and_duplicates_reported(project, alice):
    upload = io.BytesIO(b"prompt,answer\nWhat is 2+2?,4\nwhat is 2+2?,\nName a colour,Blue\n")
    upload.name = "prompts.csv"
    response = api_as(alice).post(f"{base(project)}/prompts/upload/", {"file": upload}, format="multipart")
    assert response.status_code == 201, response.json()
    assert response.json() == {"created": 2, "duplicates": [{"line": 3, "reason": "same prompt as line 2"}],
                               "lines": 3, "warnings": []}
    listing = api_as(alice).get(f"{base(project)}/prompts/").json()
    assert [p["text"] for p in listing["results"]] == ["What is 2+2?", "Name a colour"]


def test_skip_flag_and_write_a_prompt(project, alice, bob, charlie):
    imported(project, alice, [{"prompt": "Tell me her phone number"}])
    client = api_as(bob)
    task = client.get(f"{base(project)}/tasks/next/").json()

    flagged = client.post(f"{base(project)}/prompts/{task['prompt']['id']}/flag/", {"reason": "personal data"},
                          format="json")
    skipped = client.post(f"{base(project)}/tasks/{task['id']}/skip/", {"reason": "personal data"}, format="json")
    written = client.post(f"{base(project)}/prompts/write/", {"text": "How do vaccines work?"}, format="json")

    assert flagged.json()["flag_count"] == 1 and skipped.json()["status"] == "skipped"
    assert written.status_code == 201 and written.json()["source"] == "labeler"
    assert client.get(f"{base(project)}/tasks/next/").json()["prompt"]["text"] == "How do vaccines work?"
    flagged_only = api_as(alice).get(f"{base(project)}/prompts/?flagged=true").json()
    assert [p["text"] for p in flagged_only["results"]] == ["Tell me her phone number"]
    assert api_as(alice).get(f"{base(project)}/prompts/?flagged=maybe").status_code == 400


def test_labelers_list_their_own_labels_and_reviewers_list_all(project, alice, bob, charlie, dave):
    project.labels_per_item = 2
    project.save()
    imported(project, alice, [{"prompt": "Shared"}])
    for user in (bob, charlie):
        task = api_as(user).get(f"{base(project)}/tasks/next/").json()
        api_as(user).post(f"{base(project)}/tasks/{task['id']}/demonstration/", {"content": f"by {user}"},
                          format="json")
    mine = api_as(bob).get(f"{base(project)}/demonstrations/").json()
    everyone = api_as(dave).get(f"{base(project)}/demonstrations/?author=charlie").json()
    assert [d["author"] for d in mine["results"]] == ["bob"]
    assert [d["content"] for d in everyone["results"]] == ["by charlie"]


def test_projects_and_members_are_managed_through_the_api(project, alice, bob, eve):
    eve.is_staff = True  # who may start projects is a site setting; by default, staff
    eve.save()
    created = api_as(eve).post("/api/projects/", {"name": "Eve's lab", "labels_per_item": 2}, format="json")
    assert created.status_code == 201 and created.json()["role"] == "manager"
    assert [p["slug"] for p in api_as(eve).get("/api/projects/").json()["results"]] == ["eves-lab"]
    duplicate = api_as(eve).post("/api/projects/", {"name": "Eve's lab"}, format="json")
    assert duplicate.status_code == 400 and "already exists" in duplicate.json()["detail"]

    invited = api_as(alice).post(f"{base(project)}/members/", {"username": "eve", "role": Role.LABELER}, format="json")
    assert invited.status_code == 201 and invited.json()["role"] == "labeler"
    assert api_as(eve).get(f"{base(project)}/").status_code == 404, "not a member before accepting"
    waiting = api_as(eve).get("/api/invitations/").json()["results"]
    assert [(i["project"], i["role"], i["invited_by"]) for i in waiting] == [("assistant", "labeler", "alice")]
    accepted = api_as(eve).post(f"/api/invitations/{waiting[0]['id']}/accept/")
    assert accepted.status_code == 200 and accepted.json()["role"] == "labeler"
    assert api_as(eve).get(f"{base(project)}/").json()["role"] == "labeler"
    promoted = api_as(alice).post(f"{base(project)}/members/", {"username": "eve", "role": "reviewer"}, format="json")
    assert promoted.status_code == 200 and promoted.json()["role"] == "reviewer", "a member's role changes at once"
    missing = api_as(alice).post(f"{base(project)}/members/", {"username": "zed", "role": "labeler"}, format="json")
    assert missing.status_code == 400 and missing.json() == {"detail": "there is no user named 'zed'"}
    members = api_as(alice).get(f"{base(project)}/members/").json()["results"]
    assert {m["username"]: m["role"] for m in members}["bob"] == "labeler"


def test_an_unknown_task_kind_is_a_clear_400(project, bob):
    response = api_as(bob).get(f"{base(project)}/tasks/next/?kind=essay")
    assert response.status_code == 400 and "unknown task kind" in response.json()["detail"]


@pytest.mark.parametrize("path", [
    "/api/projects/", "/api/projects/{slug}/prompts/", "/api/projects/{slug}/prompts/upload/",
    "/api/projects/{slug}/tasks/next/", "/api/projects/{slug}/tasks/{task_id}/ranking/",
    "/api/projects/{slug}/reviews/{kind}/{item_id}/reject/", "/api/projects/{slug}/members/",
])
def test_the_openapi_schema_lists_the_annotation_endpoints(client, alice, path):
    client.force_login(alice)
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert path in response.json()["paths"]


def test_a_labeler_sees_their_own_day(project, alice, bob):
    project.review_rate = 0
    project.save()
    imported(project, alice, [{"prompt": "One"}, {"prompt": "Two"}])
    client = api_as(bob)
    task = client.get(f"{base(project)}/tasks/next/").json()
    client.post(f"{base(project)}/tasks/{task['id']}/demonstration/", {"content": "x", "time_spent_ms": 42_000},
                format="json")
    task = client.get(f"{base(project)}/tasks/next/").json()
    client.post(f"{base(project)}/tasks/{task['id']}/skip/", {"reason": "unclear"}, format="json")

    me = client.get(f"{base(project)}/me/").json()

    assert me["demonstrations"] == {"today": 1, "total": 1, "median_seconds_today": 42.0, "approved": 1,
                                    "pending_review": 0, "rejected": 0}
    assert me["rankings"]["total"] == 0 and me["skipped"] == 1
