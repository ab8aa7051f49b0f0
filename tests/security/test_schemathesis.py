"""The documented API under generated input: no 5xx, and every documented answer matches its schema.

Schemathesis reads ``/api/schema/`` and sends a few generated requests to each operation of ``/api/``,
``/v1/models`` and ``/v1/moderations`` (``/v1/chat/completions`` generates text, which this test is
not about), through the WSGI app in this process and as the project's manager, with the path's
``slug`` pinned to a real project so the requests reach the views rather than a 404. Bounded
(``EXAMPLES`` per operation, no shrinking) so it runs in CI in about a minute.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from serving.keys import api_key_create
from tests.annotation import helpers

EXAMPLES = 4
INCLUDED = ("/api/", "/v1/models", "/v1/moderations")


def _auth_headers(user) -> dict[str, str]:
    """The user's personal API key: it authenticates /api/ and /v1 alike."""
    _, raw = api_key_create(user=user, name="schemathesis")
    return {"Authorization": f"Bearer {raw}"}


def _failures_of(operation, *, slug: str, headers: dict) -> str | None:
    """Run the bounded examples of one operation; the first failure's text, or None."""

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def check(case):
        if "slug" in (case.path_parameters or {}):
            case.path_parameters["slug"] = slug
        case.validate_response(case.call(headers=headers), checks=[not_a_server_error, response_schema_conformance])

    try:
        check()
    except Exception as exc:
        return f"{operation.method.upper()} {operation.path}: {str(exc)[:600]}"
    return None


@pytest.mark.django_db(transaction=True)  # the WSGI app closes connections between requests
def test_the_api_answers_generated_requests_without_5xx_or_schema_violations(project, alice):
    helpers.rankable(project, "Say hello in French.")
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
    headers = _auth_headers(alice)
    operations = [r.ok() for r in schema.get_all_operations() if r.ok().path.startswith(INCLUDED)]
    failures = [f for op in operations if (f := _failures_of(op, slug=project.slug, headers=headers))]
    assert len(operations) >= 30
    assert failures == []


@pytest.mark.parametrize("path", ["/api/projects/{slug}/prompts/", "/api/projects/{slug}/runs/", "/api/keys/"])
def test_list_answers_are_documented_as_paginated(client, alice, path):
    client.force_login(alice)
    schema = client.get("/api/schema/?format=json").json()
    ref = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    component = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"count", "next", "previous", "results"} <= set(component["properties"])


def test_the_schema_builds_without_warnings():
    from django.core.management import call_command

    call_command("spectacular", "--fail-on-warn", "--validate", "--file", "/dev/null")
