"""What a ranking may hold: its tiers over the shown answers, and the flags a labeler may set on them."""

from __future__ import annotations

from annotation.errors import AnnotationError
from annotation.models import Prompt

FLAGS = ("unsafe", "factually_wrong", "not_helpful", "personal_data", "not_supported")
# "Not supported by the evidence" means something only where the prompt came with passages.
EVIDENCE_FLAGS = ("not_supported",)


def flags_for(prompt: Prompt) -> tuple[str, ...]:
    """The flags a labeler may set on this prompt's answers: the evidence ones only when it has passages."""
    if prompt.evidence:
        return FLAGS
    return tuple(f for f in FLAGS if f not in EVIDENCE_FLAGS)


def ranking_validate(order, flags, completion_ids: list[int], allowed_flags: tuple[str, ...] = FLAGS
                     ) -> tuple[list[list[int]], dict[str, list[str]]]:
    """Tiers covering exactly ``completion_ids`` once each (ties allowed), and allowed flags on them."""
    if not isinstance(order, list) or not all(isinstance(tier, list) for tier in order):
        raise AnnotationError("order must be a list of tiers, each a list of completion ids, best first")
    allowed = set(completion_ids)
    tiers, seen = [], set()
    for tier in order:
        ids = []
        for value in tier:
            if isinstance(value, bool) or not isinstance(value, int):
                raise AnnotationError(f"order: {value!r} is not a completion id")
            if value not in allowed:
                raise AnnotationError(f"completion {value} is not one of this prompt's answers")
            if value in seen:
                raise AnnotationError(f"completion {value} is placed twice; each answer goes in one tier")
            seen.add(value)
            ids.append(value)
        if ids:
            tiers.append(ids)
    missing = sorted(allowed - seen)
    if missing:
        raise AnnotationError(f"completions {', '.join(map(str, missing))} are not ranked; place every answer")
    if flags is None:
        flags = {}
    if not isinstance(flags, dict):
        raise AnnotationError("flags must map a completion id to a list of flags")
    clean: dict[str, list[str]] = {}
    for key, names in flags.items():
        if str(key) not in {str(c) for c in allowed}:
            raise AnnotationError(f"flags: completion {key} is not one of this prompt's answers")
        if not isinstance(names, list):
            raise AnnotationError(f"flags of completion {key} must be a list")
        for name in names:
            if name in EVIDENCE_FLAGS and name not in allowed_flags:
                raise AnnotationError(f"flag {name!r} on completion {key}: this prompt has no evidence passages")
            if name not in allowed_flags:
                raise AnnotationError(f"flag {name!r} on completion {key} is not one of {', '.join(allowed_flags)}")
        if names:
            clean[str(key)] = sorted(set(names), key=FLAGS.index)
    return tiers, clean
