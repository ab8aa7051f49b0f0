"""A lost database connection answers 503 with Retry-After and no trace, so clients retry."""

from unittest import mock

from django.db import OperationalError
from rest_framework.test import APIClient


def test_a_dropped_database_connection_is_a_503_to_retry_not_a_500(project, bob):
    api = APIClient(raise_request_exception=False)
    api.force_authenticate(bob)
    with mock.patch("annotation.api_tasks.task_next", side_effect=OperationalError("server closed the connection")):
        answer = api.get(f"/api/projects/{project.slug}/tasks/next/?kind=demonstration")

    assert answer.status_code == 503 and answer["Retry-After"] == "5"
    assert "try again" in answer.json()["detail"] and "Traceback" not in answer.content.decode()
    assert api.get(f"/api/projects/{project.slug}/tasks/next/?kind=demonstration").status_code in (200, 204)
