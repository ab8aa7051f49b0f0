"""How the demo loop talks to the platform: its public HTTP API, as one user at a time.

In-process (the default) the requests go through Django's test client, so the loop exercises the
same URL routing, authentication, permissions and views as a browser or a script would, without a
port; with ``base_url`` they go over HTTP to a running server (``make run``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass


class ApiFailed(RuntimeError):
    """A request the loop needed was refused; the message names the call and the server's answer."""


@dataclass
class Response:
    status: int
    data: object
    text: str


class ApiClient:
    def __init__(self, authorization: str, *, base_url: str | None = None) -> None:
        self.authorization = authorization
        self.base_url = base_url.rstrip("/") if base_url else None
        if self.base_url is None:
            from django.test import Client

            self._client = Client(HTTP_AUTHORIZATION=authorization, SERVER_NAME="localhost")
        else:
            import httpx

            self._client = httpx.Client(base_url=self.base_url, headers={"Authorization": authorization}, timeout=600)

    @classmethod
    def for_api_key(cls, key: str, **kwargs) -> ApiClient:
        return cls(f"Bearer {key}", **kwargs)

    def request(self, method: str, path: str, payload=None, *, expect: tuple[int, ...] = (200, 201)) -> Response:
        if self.base_url is None:
            call = getattr(self._client, method.lower())
            if method.upper() == "GET":
                raw = call(path, payload or {})
            else:
                raw = call(path, data=json.dumps(payload or {}), content_type="application/json")
            status, text = raw.status_code, b"".join(raw.streaming_content).decode() if raw.streaming else raw.content.decode()
        else:
            if method.upper() == "GET":
                raw = self._client.get(path, params=payload or {})
            else:
                raw = self._client.request(method.upper(), path, json=payload or {})
            status, text = raw.status_code, raw.text
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = None
        if status not in expect:
            raise ApiFailed(f"{method.upper()} {path} answered {status}: {text[:500]}")
        return Response(status, data, text)

    def get(self, path: str, params: dict | None = None, **kwargs) -> Response:
        return self.request("GET", path, params, **kwargs)

    def post(self, path: str, payload=None, **kwargs) -> Response:
        return self.request("POST", path, payload, **kwargs)
