"""Clients for the security tests: an API client signed in by token, and the project's base URL."""

from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


def api_as(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def base(project) -> str:
    return f"/api/projects/{project.slug}"
