"""API keys (personal access tokens): created per user, shown once, stored as a sha256 only.

A key authenticates ``/v1`` and the REST API under ``/api/`` as ``Authorization: Bearer tl-…`` and
acts as its user: it reaches exactly the projects the user is a member of, with the user's role in
each. Revoking it makes the next request a 401. Keys are managed from a signed-in session only
(the keys page, or ``/api/keys/`` with the session), so a leaked key cannot mint keys that outlive it.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.db import transaction
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from config.db.prepared import Prepared
from serving.errors import ServingError
from serving.models import ApiKey

KEY_PREFIX = "tl-"
TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per key


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_create(*, user, name: str) -> tuple[ApiKey, str]:
    """A new key for ``user``; the raw key is returned here and never again."""
    name = (name or "").strip()
    if not name:
        raise ServingError("give the key a name, e.g. the script or machine that uses it")
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(user=user, name=name[:100], prefix=raw[:10], key_hash=_digest(raw))
    return key, raw


def api_key_revoke(*, user, key_id: int) -> ApiKey:
    """Revoke one of ``user``'s keys; anyone else's (or no) key is a 404, like every object one cannot see."""
    key = get_object_or_404(ApiKey, user=user, pk=key_id)
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key


def _active_key(*, key_hash):
    return ApiKey.objects.select_related("user").filter(key_hash=key_hash, revoked_at__isnull=True)[:1]


_ACTIVE_KEY = Prepared(_active_key, key_hash=str)  # every API request reads it: SQL built once per process


def api_key_user(raw: str):
    """The active user owning ``raw``, or None for an unknown, revoked or inactive key."""
    if not raw.startswith(KEY_PREFIX):
        return None
    key = _ACTIVE_KEY.first(key_hash=_digest(raw))
    if key is None or not key.user.is_active:
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > TOUCH_EVERY:
        # In a transaction so that on SQLite it waits in the writers' line (config/db/sqlite3) rather
        # than in SQLite's busy handler, which naps up to 100 ms at a time while others write.
        with transaction.atomic():
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key.user


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer tl-…``, as the official ``openai`` client sends it."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace").split()
        if not header or header[0] != self.keyword:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("the Authorization header must be `Bearer <api key>`")
        user = api_key_user(header[1])
        if user is None:
            raise exceptions.AuthenticationFailed("invalid or revoked API key")
        return user, None

    def authenticate_header(self, request):
        return self.keyword


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """The key as a bearer token in the OpenAPI schema (Swagger UI's *Authorize* accepts it)."""

    target_class = "serving.keys.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A Tuneloop API key (tl-…) from *API keys*."}
