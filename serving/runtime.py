"""Which engine and which moderator answer for a deployment, loaded once per process.

Both are looked up on every request from the deployment row, so promoting another version (or
rolling back) takes effect on the next message without a restart; the loaded objects are cached
by model folder, so an unchanged deployment costs a dictionary lookup.
"""

from __future__ import annotations

import json
import threading

from django.conf import settings

from serving.engine import RemoteEngine, engine_for
from serving.moderation import Moderator, load_moderator_or_closed
from serving.selectors import settings_of

_MODERATORS: dict[tuple[str, str, float], Moderator] = {}
_LOCK = threading.Lock()


def engine_of(deployment):
    from training.registry import version_path

    if settings.ENGINE_BACKEND == "openai":
        return RemoteEngine(settings.ENGINE_URL, model=deployment.policy.name, api_key=settings.ENGINE_API_KEY)
    return engine_for(version_path(deployment.policy), capacity=settings.ENGINE_CAPACITY,
                      queue_timeout=settings.ENGINE_QUEUE_SECONDS)


def moderator_for(folder, custom_categories: dict | None = None) -> Moderator:
    """The moderator of a moderation model folder (None: the shipped one) plus a project's own categories.

    A folder that cannot be loaded gives a moderator that flags everything (fail closed)."""
    key = (str(folder or ""), json.dumps(custom_categories or {}, sort_keys=True), settings.MODERATION_TIMEOUT_MS)
    with _LOCK:
        moderator = _MODERATORS.get(key)
        if moderator is None:
            moderator, loaded = load_moderator_or_closed(folder, extra_categories=custom_categories or {},
                                                         timeout_ms=settings.MODERATION_TIMEOUT_MS)
            if not loaded:  # fails closed; not cached, so a repaired folder is picked up on the next message
                return moderator
            if len(_MODERATORS) > 16:
                _MODERATORS.clear()
            _MODERATORS[key] = moderator
        return moderator


def moderator_of(project, deployment=None) -> Moderator:
    from training.registry import version_path

    folder = version_path(deployment.moderation) if deployment is not None and deployment.moderation else None
    return moderator_for(folder, settings_of(project).custom_categories if project is not None else None)
