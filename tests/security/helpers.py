"""Clients for the security tests: an API client signed in with a personal API key, and the project's base URL."""

from rest_framework.test import APIClient

from serving.keys import api_key_create


def api_as(user) -> APIClient:
    client = APIClient()
    if user is not None:
        _, raw = api_key_create(user=user, name="security tests")
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def base(project) -> str:
    return f"/api/projects/{project.slug}"
