"""The model registry: every model version is a folder in the model store plus its lineage row."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import IntegrityError

from training.errors import TrainingError
from training.models import ModelVersion


def model_store() -> Path:
    settings.MODEL_STORE_DIR.mkdir(parents=True, exist_ok=True)
    return settings.MODEL_STORE_DIR


def version_dir(name: str) -> Path:
    """Where the folder of version ``name`` lives (it may not exist yet)."""
    return model_store() / name


def version_path(version: ModelVersion) -> Path:
    return model_store() / version.path


def model_version_register(
    *,
    name: str,
    kind: str,
    folder: Path,
    project=None,
    parent: ModelVersion | None = None,
    run=None,
    snapshot=None,
    config: dict | None = None,
    metrics: dict | None = None,
) -> ModelVersion:
    folder = Path(folder).resolve()
    store = model_store().resolve()
    if not folder.is_dir():
        raise TrainingError(f"model folder {folder} does not exist")
    if store not in folder.parents:
        raise TrainingError(f"model folder {folder} is outside the model store {store}")
    try:
        return ModelVersion.objects.create(
            name=name,
            kind=kind,
            project=project,
            parent=parent,
            run=run,
            snapshot=snapshot,
            path=str(folder.relative_to(store)),
            config=config or {},
            metrics=metrics or {},
        )
    except IntegrityError as exc:
        raise TrainingError(f"a model version named {name!r} already exists") from exc


def lineage(version: ModelVersion) -> list[ModelVersion]:
    """The version and its ancestors, newest first."""
    chain, seen = [], set()
    node = version
    while node is not None and node.pk not in seen:
        chain.append(node)
        seen.add(node.pk)
        node = node.parent
    return chain
