"""Which engine and which moderator answer for a deployment, loaded once per process.

Both are looked up on every request from the deployment row, so promoting another version (or
rolling back) takes effect on the next message without a restart; the loaded objects are cached
by model folder, so an unchanged deployment costs a dictionary lookup.
"""

from __future__ import annotations

import json
import logging
import threading

from django.conf import settings

from serving.engine import KEEP_LOADED, RemoteEngine, engine_for, engine_states, engine_warm
from serving.moderation import Moderator, load_moderator_or_closed
from serving.selectors import deployed_now, settings_of

log = logging.getLogger(__name__)
WARM_MODELS = KEEP_LOADED
_WARM = {"on": False}
_MODERATORS: dict[tuple[str, str, float], Moderator] = {}
_LOCK = threading.Lock()


def engine_of(deployment):
    from training.registry import version_path

    if settings.ENGINE_BACKEND == "openai":
        return RemoteEngine(settings.ENGINE_URL, model=deployment.policy.name, api_key=settings.ENGINE_API_KEY)
    return engine_for(version_path(deployment.policy), **_engine_options())


def _engine_options() -> dict:
    return {"capacity": settings.ENGINE_CAPACITY, "max_queue": settings.ENGINE_QUEUE,
            "queue_timeout": settings.ENGINE_QUEUE_SECONDS}


def warm_start() -> None:
    """At web-process start: load the deployed policies in the background, so the first user of each
    does not wait for the model to load; from then on a new deployment is loaded as it is made."""
    _WARM["on"] = True
    if settings.ENGINE_BACKEND != "local":
        return

    def load_deployed() -> None:
        from django.db import connection

        try:
            deployments = list(deployed_now()[:WARM_MODELS])
        except Exception:  # no database yet (first start before migrate): the first request loads it
            log.exception("warm start: could not read the deployments")
            return
        finally:
            connection.close()
        for deployment in deployments:
            warm(deployment)

    threading.Thread(target=load_deployed, name="engine-warm-start", daemon=True).start()


def warm(deployment) -> None:
    """Load ``deployment``'s policy in the background, in a web process that warm-started (not in tests
    or workers, which never answer chat)."""
    from training.registry import version_path

    if _WARM["on"] and settings.ENGINE_BACKEND == "local":
        engine_warm(version_path(deployment.policy), **_engine_options())


def engine_status() -> dict:
    """What ``/healthz`` says about the models: the load state here of the policies a web process keeps
    loaded (the ``WARM_MODELS`` newest deployments); ``ready`` once all of them are."""
    from training.registry import version_path

    if settings.ENGINE_BACKEND != "local":
        return {"backend": settings.ENGINE_BACKEND, "ready": True, "models": {}}
    states = engine_states()
    models = {d.policy.name: states.get(str(version_path(d.policy).resolve()), {"state": "not loaded"})
              for d in deployed_now()[:WARM_MODELS]}
    return {"backend": "local", "ready": all(m["state"] == "ready" for m in models.values()), "models": models}


def policy_loading(deployment) -> bool:
    """Whether ``deployment``'s policy is being loaded in this process right now (the chat page says so)."""
    from training.registry import version_path

    if deployment is None or settings.ENGINE_BACKEND != "local":
        return False
    state = engine_states().get(str(version_path(deployment.policy).resolve()), {}).get("state")
    return state == "loading"


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
