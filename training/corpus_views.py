"""Pages for corpora and pre-training runs (managers only)."""

from __future__ import annotations

import json

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.validators import MaxValueValidator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from annotation.selectors import MANAGERS, project_for_user
from config.input import loads
from config.uploads import too_large
from training.corpus import corpus_from_demonstrations, corpus_upload
from training.errors import TrainingError
from training.models import Corpus, ModelVersion, RunKind, VersionKind
from training.pretrain_config import PretrainConfig
from training.runs import run_create
from training.stage_configs import max_nproc


class CorpusUploadForm(forms.Form):
    file = forms.FileField(help_text="UTF-8 .txt (one document per line) or .jsonl with a 'text' field.")


class PretrainForm(forms.Form):
    corpus = forms.ModelChoiceField(queryset=Corpus.objects.none())
    start_from = forms.ModelChoiceField(
        queryset=ModelVersion.objects.none(), required=False, empty_label="From scratch (new tokenizer and model)"
    )
    nproc = forms.IntegerField(min_value=1, initial=1, label="Processes (torchrun when > 1)")
    config = forms.CharField(widget=forms.Textarea(attrs={"rows": 8, "class": "mono"}), required=False)

    def __init__(self, project, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["nproc"].validators.append(MaxValueValidator(max_nproc()))
        self.fields["nproc"].widget.attrs["max"] = max_nproc()
        self.fields["corpus"].queryset = Corpus.objects.filter(project=project)
        self.fields["start_from"].queryset = ModelVersion.objects.filter(
            kind=VersionKind.POLICY, project__in=[project, None]
        ) | ModelVersion.objects.filter(kind=VersionKind.POLICY, project__isnull=True)

    def clean_config(self):
        raw = self.cleaned_data["config"].strip() or "{}"
        try:
            values = loads(raw)
            if not isinstance(values, dict):
                raise ValueError("must be a JSON object")
            PretrainConfig.from_dict(values)
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            raise forms.ValidationError(f"config: {exc}") from None
        return values


def _defaults() -> str:
    from dataclasses import asdict

    return json.dumps(asdict(PretrainConfig()), indent=2)


@login_required
def corpora(request, slug):
    project = project_for_user(request.user, slug, MANAGERS)
    upload = CorpusUploadForm()
    pretrain = PretrainForm(project, initial={"config": _defaults()})
    if request.method == "POST":
        if refused := too_large("corpus", request=request):
            upload = CorpusUploadForm({}, {})
            upload.full_clean()
            upload.errors["file"] = upload.error_class([refused])
            return _page(request, project, upload, pretrain, status=413)
        if "file" in request.FILES:
            upload = CorpusUploadForm(request.POST, request.FILES)
            if upload.is_valid() and (refused := too_large("corpus", upload=upload.cleaned_data["file"])):
                upload.add_error("file", refused)
                return _page(request, project, upload, pretrain, status=413)
            if upload.is_valid():
                f = upload.cleaned_data["file"]
                try:
                    corpus = corpus_upload(project=project, name=f.name, chunks=f.chunks(), created_by=request.user)
                    messages.success(request, f"Corpus {corpus.name} stored: {corpus.line_count} lines.")
                    return redirect("corpora", slug=slug)
                except TrainingError as exc:
                    upload.add_error("file", str(exc))
        else:
            pretrain = PretrainForm(project, request.POST)
            if pretrain.is_valid():
                data = pretrain.cleaned_data
                config = {**data["config"], "nproc": data["nproc"]}
                if data["start_from"] is not None:
                    config["from_scratch"] = False
                run = run_create(
                    kind=RunKind.PRETRAIN, project=project, config=config, corpus=data["corpus"],
                    parent_version=data["start_from"], created_by=request.user,
                )
                messages.success(request, f"Pre-training run #{run.pk} queued.")
                return redirect(f"/projects/{slug}/runs/{run.pk}/")
    return _page(request, project, upload, pretrain)


def _page(request, project, upload, pretrain, status: int = 200):
    return render(request, "training/corpora.html", {
        "project": project,
        "corpora": Corpus.objects.filter(project=project),
        "upload": upload,
        "pretrain": pretrain,
    }, status=status)


@login_required
@require_POST
def corpus_demonstrations(request, slug):
    project = project_for_user(request.user, slug, MANAGERS)
    try:
        corpus = corpus_from_demonstrations(project=project, created_by=request.user)
        messages.success(request, f"Corpus made from {corpus.line_count} approved demonstrations.")
    except TrainingError as exc:
        messages.error(request, str(exc))
    return redirect("corpora", slug=slug)


@login_required
def corpus_download(request, slug, pk):
    from django.http import FileResponse

    from training.corpus import corpus_path

    project = project_for_user(request.user, slug, MANAGERS)
    corpus = get_object_or_404(Corpus, pk=pk, project=project)
    return FileResponse(open(corpus_path(corpus), "rb"), as_attachment=True, filename=f"corpus-{corpus.pk}.txt")
