"""/healthz: database, broker, a live worker per queue, and the model store; 503 says which is down.

Anyone gets the status of each component; staff also get the problems in words, the live workers'
names, the model store's path and the engine's state per model. ``engine`` says whether the deployed
models are loaded in this web process (``ready``), or still loading after a start or a deploy:
informative, it does not turn the answer into a 503.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from config.celery import QUEUES, app


def _database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return None
    except Exception as exc:
        return f"database unreachable: {exc}"


def _broker() -> str | None:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return None
    except Exception as exc:
        return f"broker unreachable ({settings.CELERY_BROKER_URL.split('@')[-1]}): {exc}"


def _workers() -> tuple[dict, list[str]]:
    from training.selectors import live_workers

    since = timezone.now() - timedelta(seconds=settings.WORKER_STALE_SECONDS)
    workers = live_workers(since=since)
    per_queue = {q: sorted(w.hostname for w in workers if q in w.queues) for q in QUEUES}
    problems = [f"no live worker consumes queue '{q}'" for q, names in per_queue.items() if not names]
    return per_queue, problems


def _model_store() -> tuple[dict, str | None]:
    from training.selectors import base_version

    store = settings.MODEL_STORE_DIR
    if not store.is_dir():
        return {}, f"model store {store} does not exist"
    base = base_version()
    info = {"path": str(store), "base_model": base.name if base else None}
    if base is None:
        return info, "base model is not provisioned (run `python manage.py provision_base_model`)"
    if not (store / base.path / "config.json").exists():
        return info, f"base model folder {store / base.path} is missing its config.json"
    return info, None


def _engine() -> dict:
    from serving.runtime import engine_status

    try:
        return engine_status()
    except Exception as exc:
        return {"ready": False, "error": str(exc)[:300]}


@require_GET
def healthz(request):
    """200 or 503 with a status per component for anyone (load balancers need no login); the problems,
    worker names, paths and model names only for staff, since they map the machine for an attacker."""
    database, broker = _database(), _broker()
    problems = [p for p in (database, broker) if p]
    workers, worker_problems = _workers() if not problems else ({}, [])
    store, store_problem = _model_store() if not problems else ({}, None)
    reachable = not problems
    problems += worker_problems + ([store_problem] if store_problem else [])
    body = {
        "status": "ok" if not problems else "down",
        "components": {
            "database": "down" if database else "ok",
            "broker": "down" if broker else "ok",
            "queues": {q: ("ok" if workers.get(q) else "down") if reachable else "unknown" for q in QUEUES},
            "model_store": ("down" if store_problem else "ok") if reachable else "unknown",
        },
    }
    engine = _engine() if database is None else {}
    if engine:
        body["components"]["engine"] = "ready" if engine.get("ready") else "not ready"
    if request.user.is_authenticated and request.user.is_staff:
        body.update({"problems": problems, "workers": workers, "model_store": store, "engine": engine})
    return JsonResponse(body, status=200 if not problems else 503)
