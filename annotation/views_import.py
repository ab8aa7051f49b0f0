"""Import page (prompts or preferences): small files import within the request, big ones in a thread with a
live progress bar.

Why a thread: 100k lines take about half a minute here, and under the ASGI server Django runs sync
views one at a time per process, so a half-minute request would stall every labeler's page. The
thread calls ``prompts_import`` (one transaction, all-or-nothing) and writes its progress to a small
JSON file under ``DATA_DIR/imports/`` that the page polls with htmx every second; a file rather than
the process-local cache, so any web process on the machine can answer the poll. A server restart
during an import rolls the transaction back; the page then reports the job as lost.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.db import close_old_connections, connection
from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_POST

from annotation.errors import AnnotationError
from annotation.forms import ImportForm
from annotation.imports import ImportFailed, ImportReport, prompts_import
from annotation.models import Project
from annotation.preference_import import preferences_import
from annotation.selectors import MANAGERS, project_for_user
from config.uploads import too_large

log = logging.getLogger(__name__)
INLINE_BYTES = 1_000_000  # bigger uploads import in the background with a progress bar
PROGRESS_EVERY_S = 0.5
LOST_AFTER_S = 3600


@login_required
def import_page(request, slug: str):
    project = project_for_user(request.user, slug, MANAGERS)
    return render(request, "annotation/import.html", {"project": project, "form": ImportForm()})


@login_required
@require_POST
def import_post(request, slug: str):
    """Import an upload; the response lists every problem by line, or polls a background import."""
    project = project_for_user(request.user, slug, MANAGERS)
    refused = too_large("import", request=request)
    form = ImportForm() if refused else ImportForm(request.POST, request.FILES)
    context = {"project": project, "form": form}
    if refused:
        context["error"] = refused
        template = "annotation/_import_result.html" if request.htmx else "annotation/import.html"
        return render(request, template, context, status=413)
    if form.is_valid():
        upload, kind, review = (form.cleaned_data[k] for k in ("file", "kind", "review"))
        context["filename"], context["kind"] = upload.name, kind
        if upload.size > INLINE_BYTES:
            context["job"] = _job_view(_job_start(project, request.user, upload, kind, review))
        else:
            try:
                context["report"] = _import(kind, review, project=project, stream=upload, filename=upload.name,
                                            user=request.user)
            except ImportFailed as exc:
                context["problems"], context["error"] = exc.problems, str(exc)
            except AnnotationError as exc:
                context["error"] = str(exc)
    template = "annotation/_import_result.html" if request.htmx else "annotation/import.html"
    failed = "error" in context or form.errors
    return render(request, template, context, status=400 if failed and not request.htmx else 200)


@login_required
def import_status(request, slug: str, token: str):
    """The progress of a background import, or its result once finished (only to the manager who started it)."""
    project = project_for_user(request.user, slug, MANAGERS)
    job = _job_read(token)
    if job is None or job["project"] != project.pk or job["user"] != request.user.pk:
        raise Http404("No such import")
    context = {"project": project, "filename": job["filename"], "job": _job_view(job),
               "kind": job.get("kind", "prompts")}
    if job["state"] == "done":
        context["report"] = ImportReport(created=job["created"], duplicates=[tuple(d) for d in job["duplicates"]],
                                         lines=job["lines"], warnings=job.get("warnings", []))
    elif job["state"] == "failed":
        context["problems"], context["error"] = job.get("problems", []), job["error"]
    return render(request, "annotation/_import_result.html", context)


def _import(kind: str, review: bool, **arguments) -> ImportReport:
    """The import service of ``kind``: prompts, or preferences stored as rankings."""
    if kind == "preferences":
        return preferences_import(review=review, **arguments)
    return prompts_import(**arguments)


# --- background jobs: a saved upload, a thread, a JSON progress file ---

def _jobs_dir() -> Path:
    folder = Path(settings.DATA_DIR) / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _job_path(token: str) -> Path:
    if not token.isalnum():
        raise Http404("No such import")
    return _jobs_dir() / f"{token}.json"


def _job_read(token: str) -> dict | None:
    try:
        job = json.loads(_job_path(token).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if job["state"] == "running" and time.time() - job["updated"] > LOST_AFTER_S:
        job.update(state="failed", error="the import stopped answering (was the server restarted?); nothing was imported")
    return job


def _job_write(token: str, job: dict) -> None:
    job["updated"] = time.time()
    path = _job_path(token)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(job))
    os.replace(tmp, path)


def _job_view(job: dict) -> dict:
    total = max(job.get("total") or 1, 1)
    return {**job, "percent": min(100, round(100 * job.get("lines", 0) / total)),
            "elapsed": round(time.time() - job["started"])}


def _rows_of_parquet(path: Path) -> int | None:
    """A Parquet file's row count from its footer (its 'lines' for the progress bar), None if not Parquet."""
    with path.open("rb") as f:
        if f.read(4) != b"PAR1":
            return None
    try:
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    except Exception:  # an unreadable file fails in the import itself, with its reason
        return None


def _job_start(project: Project, user, upload, kind: str = "prompts", review: bool = False) -> dict:
    token = uuid.uuid4().hex
    data = _jobs_dir() / f"{token}.upload"
    total, last = 0, b"\n"
    with data.open("wb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
            total += chunk.count(b"\n")
            last = chunk[-1:] or last
    total += last != b"\n"
    total = _rows_of_parquet(data) or total
    job = {"token": token, "state": "running", "project": project.pk, "user": user.pk, "filename": upload.name,
           "kind": kind, "review": review, "lines": 0, "total": total, "started": time.time()}
    _job_write(token, job)
    threading.Thread(target=_job_run, args=(token, dict(job)), name=f"import-{token[:8]}", daemon=True).start()
    return job


def _job_run(token: str, job: dict) -> None:
    data = _jobs_dir() / f"{token}.upload"
    last = 0.0

    def progress(lines: int) -> None:
        nonlocal last
        if time.monotonic() - last >= PROGRESS_EVERY_S:
            last = time.monotonic()
            _job_write(token, {**job, "lines": lines})

    close_old_connections()
    try:
        project = Project.objects.get(pk=job["project"])
        user = get_user_model().objects.get(pk=job["user"])
        with data.open("rb") as stream:
            report = _import(job.get("kind", "prompts"), job.get("review", False), project=project, stream=stream,
                             filename=job["filename"], user=user, progress=progress)
        job.update(state="done", created=report.created, duplicates=report.duplicates[:1000], lines=report.lines,
                   warnings=report.warnings)
    except ImportFailed as exc:
        job.update(state="failed", error=str(exc), problems=exc.problems[:1000])
    except AnnotationError as exc:
        job.update(state="failed", error=str(exc))
    except Exception as exc:  # a thread has nobody above it to report to; the page shows it
        log.exception("import %s failed", token)
        job.update(state="failed", error=f"the import failed ({type(exc).__name__}); nothing was imported")
    finally:
        data.unlink(missing_ok=True)
        connection.close()
    _job_write(token, job)
