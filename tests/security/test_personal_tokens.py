"""Issue 15 item 2 / issue 13 Low: the hashed API keys are the personal access tokens of the REST API.

A script uses one with ``requests`` over real HTTP on ``/api/`` (scoped by the owner's roles), gets
401 once it is revoked, cannot mint keys with it, and no plaintext token is left in the database.
"""

import pytest
import requests

from serving.keys import api_key_create, api_key_revoke


@pytest.mark.django_db(transaction=True)
def test_a_script_uses_a_personal_token_on_the_rest_api_and_gets_401_after_revoking(live_server, project, bob, eve):
    key, raw = api_key_create(user=bob, name="labeling script")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {raw}"
    projects = session.get(f"{live_server.url}/api/projects/", timeout=30)
    assert projects.status_code == 200
    assert [(p["slug"], p["role"]) for p in projects.json()["results"]] == [("assistant", "labeler")]
    assert session.get(f"{live_server.url}/api/projects/assistant/members/", timeout=30).status_code == 403, \
        "the token has bob's role: a labeler cannot list members"
    assert session.get(f"{live_server.url}/api/projects/other/", timeout=30).status_code == 404
    wrote = session.post(f"{live_server.url}/api/projects/assistant/prompts/write/",
                         json={"text": "What is a haiku?"}, timeout=30)
    assert wrote.status_code == 201, wrote.text
    assert session.post(f"{live_server.url}/api/keys/", json={"name": "more"}, timeout=30).status_code in (401, 403), \
        "a key cannot mint keys that would outlive it"

    api_key_revoke(user=bob, key_id=key.pk)
    revoked = session.get(f"{live_server.url}/api/projects/", timeout=30)
    assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]


def test_no_plaintext_token_table_is_left(db):
    from django.db import connection

    assert "authtoken_token" not in connection.introspection.table_names()
