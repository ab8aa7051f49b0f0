"""Labels made the quick way for training tests: prompts, approved demonstrations, ranked completions.

The annotation app's own flows (task queue, review) are tested there; training tests only need
rows in the states the selectors call eligible.
"""

from __future__ import annotations

from annotation.models import Completion, Demonstration, Prompt, Ranking, ReviewState
from annotation.prompt_text import normalized_hash


def prompt(project, text: str, **fields) -> Prompt:
    messages = [{"role": "user", "content": text}]
    return Prompt.objects.create(project=project, messages=messages, normalized_hash=normalized_hash(messages), **fields)


def demonstration(project, author, question: str, answer: str, *, state=ReviewState.APPROVED) -> Demonstration:
    return Demonstration.objects.create(prompt=prompt(project, question), author=author, content=answer,
                                        review_state=state)


def ranked(project, author, question: str, answers: list[str], tiers: list[list[int]], *,
           state=ReviewState.APPROVED) -> Ranking:
    """A prompt with ``answers`` as completions, ranked by ``tiers`` of indexes into ``answers``."""
    p = prompt(project, question)
    completions = [Completion.objects.create(prompt=p, text=text) for text in answers]
    order = [[completions[i].pk for i in tier] for tier in tiers]
    return Ranking.objects.create(prompt=p, author=author, order=order, review_state=state)
