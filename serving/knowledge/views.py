"""Knowledge-base pages: every member reads (the list, a base, a document), managers write (create,
upload, re-index, delete). Thin: parse, check the role, call one service, render."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from annotation.selectors import EVERYONE, MANAGERS, project_for_user
from config.uploads import too_large
from serving.errors import ServingError
from serving.knowledge import selectors, services
from serving.knowledge.parsing import EXTENSIONS


def _context(project, base) -> dict:
    total, embedded = selectors.chunk_counts(base)
    return {"project": project, "base": base, "chunk_total": total, "chunk_embedded": embedded,
            "is_manager": project.requester_role == "manager"}


@login_required
def knowledge_bases(request, slug: str):
    if request.method == "POST":
        project = project_for_user(request.user, slug, MANAGERS)
        try:
            base = services.knowledge_base_create(project=project, name=request.POST.get("name", ""),
                                                  description=request.POST.get("description", "")[:2000],
                                                  created_by=request.user)
        except ServingError as exc:
            messages.error(request, str(exc))
            return redirect("serving:knowledge_bases", slug=slug)
        messages.success(request, f"Knowledge base {base.name} created: upload documents to it.")
        return redirect("serving:knowledge_base", slug=slug, knowledge_base_id=base.pk)
    project = project_for_user(request.user, slug, EVERYONE)
    return render(request, "serving/knowledge_bases.html", {
        "project": project, "bases": selectors.knowledge_bases_of(project),
        "is_manager": project.requester_role == "manager"})


@login_required
def knowledge_base(request, slug: str, knowledge_base_id: int):
    if request.method == "POST":
        return _upload(request, slug, knowledge_base_id)
    project = project_for_user(request.user, slug, EVERYONE)
    base = selectors.knowledge_base_of(project, knowledge_base_id)
    return render(request, "serving/knowledge_base.html", {
        **_context(project, base), "documents": selectors.documents_of(base)[:1000],
        "accept": ",".join(EXTENSIONS)})


def _upload(request, slug: str, knowledge_base_id: int):
    project = project_for_user(request.user, slug, MANAGERS)
    base = selectors.knowledge_base_of(project, knowledge_base_id)
    problem = too_large("knowledge", request=request)  # before the body is read
    if problem:
        messages.error(request, problem)
        return redirect("serving:knowledge_base", slug=slug, knowledge_base_id=base.pk)
    uploads = request.FILES.getlist("files")
    try:
        files = [(f.name, f.read()) for f in uploads]
        stored = services.knowledge_documents_upload(knowledge_base=base, files=files, created_by=request.user)
    except services.KnowledgeImportFailed as exc:
        messages.error(request, "Nothing was stored: " + "; ".join(exc.problems[:20]))
    else:
        messages.success(request, f"{len(stored)} document{'s' if len(stored) != 1 else ''} stored; indexing.")
    finally:
        for f in uploads:
            f.close()
    return redirect("serving:knowledge_base", slug=slug, knowledge_base_id=base.pk)


@login_required
def knowledge_base_progress(request, slug: str, knowledge_base_id: int):
    """The indexing status fragment, polled by the page while the base indexes (htmx)."""
    project = project_for_user(request.user, slug, EVERYONE)
    base = selectors.knowledge_base_of(project, knowledge_base_id)
    return render(request, "serving/_knowledge_progress.html", _context(project, base))


@login_required
@require_POST
def knowledge_base_reindex(request, slug: str, knowledge_base_id: int):
    project = project_for_user(request.user, slug, MANAGERS)
    base = selectors.knowledge_base_of(project, knowledge_base_id)
    try:
        services.knowledge_base_reindex(knowledge_base=base)
        messages.success(request, f"Indexing {base.name} again.")
    except ServingError as exc:
        messages.error(request, str(exc))
    return redirect("serving:knowledge_base", slug=slug, knowledge_base_id=base.pk)


@login_required
@require_POST
def knowledge_base_delete(request, slug: str, knowledge_base_id: int):
    project = project_for_user(request.user, slug, MANAGERS)
    base = selectors.knowledge_base_of(project, knowledge_base_id)
    services.knowledge_base_delete(knowledge_base=base)
    messages.success(request, f"Knowledge base {base.name} deleted.")
    return redirect("serving:knowledge_bases", slug=slug)


@login_required
@require_POST
def knowledge_document_delete(request, slug: str, knowledge_base_id: int, document_id: int):
    project = project_for_user(request.user, slug, MANAGERS)
    base = selectors.knowledge_base_of(project, knowledge_base_id)
    document = selectors.document_of(base, document_id)
    services.knowledge_document_delete(document=document)
    messages.success(request, f"{document.title} deleted; answers no longer cite it.")
    return redirect("serving:knowledge_base", slug=slug, knowledge_base_id=base.pk)


@login_required
def knowledge_document(request, slug: str, knowledge_base_id: int, document_id: int):
    """A document as its passages, each with an anchor ``#chunk-<id>`` that citations link to."""
    project = project_for_user(request.user, slug, EVERYONE)
    base = selectors.knowledge_base_of(project, knowledge_base_id)
    document = selectors.document_of(base, document_id)
    return render(request, "serving/knowledge_document.html", {
        "project": project, "base": base, "document": document,
        "chunks": selectors.chunks_of(document)[:5000], "is_manager": project.requester_role == "manager"})
