"""Prompts and completions made directly, for the queue, review and API tests."""

from __future__ import annotations

from annotation.models import Completion, Prompt
from annotation.prompt_text import normalized_hash
from annotation.services import completions_add


def prompt(project, text: str, **fields) -> Prompt:
    messages = [{"role": "user", "content": text}]
    return Prompt.objects.create(project=project, messages=messages, normalized_hash=normalized_hash(messages), **fields)


def rankable(project, text: str, k: int | None = None, **fields) -> tuple[Prompt, list[Completion]]:
    p = prompt(project, text, **fields)
    completions = completions_add(prompt=p, texts=[f"{text} answer {i}" for i in range(k or project.completions_per_prompt)])
    return p, completions
