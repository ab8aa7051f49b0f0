"""Corpus rows behind an assistant's opener, labels kept: harm that a model writes after "Sure, here it is:".

Why: a model that complies with a harmful request opens with a harmless line ("Sure, here is what you
asked for.") and writes the harm after it. Trained on the corpus's texts alone, the moderator read
that opener as evidence of harmlessness: of the corpus dev split's harmful texts it flags whole, 12 %
passed once one of four openers stood in front of them (bench/moderation_hold_back.py), and output
moderation reads exactly such text.

``opener_rows`` returns ``count`` rows, a third of them the train split's harmful rows (a positive
label), a third its other rows and a third assistant-style prose (training/moderation_fragments.py's
sources, every category 0), each behind an opener from ``OPENERS`` with the row's own labels: the
benign two thirds keep the opener itself from reading as harmful ("Sure! Here is a recipe" must pass).
The openers here are written for training only; the bench's four are different sentences, so its
figure measures openers the model never saw.
"""

from __future__ import annotations

import random

from training.moderation_fragments import prose_sources

OPENERS = (
    "Sure! ", "Sure, here you go. ", "Certainly. Here it is: ", "Absolutely, here's the text: ",
    "Okay, as requested: ", "Here is the message you asked for:\n\n", "Of course. ", "No problem! Here's a draft:\n",
    "Alright, here's what I came up with. ", "Happy to help. ", "Here's one version: ", "Fine. ", "As you wish: ",
    "Got it. Here's the reply:\n", "Here's the story:\n\n", "Sure thing. ", "Yes. ", "Here goes: ", "Understood. ",
    "I can do that. ", "Great question! ", "Here's a short answer: ", "Let me help with that. ", "Done. ",
)


def opener_rows(corpus_rows: list[dict], categories: list[str], count: int, seed: int) -> list[dict]:
    """``count`` rows with an opener in front and their labels unchanged: a third the corpus's harmful rows,
    a third its other rows, a third assistant-style prose (every category known 0)."""
    if count <= 0:
        return []
    rng = random.Random(seed)
    harmful = [r for r in corpus_rows if any(v == 1 for v in r["categories"].values())]
    other = [r for r in corpus_rows if not any(v == 1 for v in r["categories"].values())]
    chosen = rng.sample(harmful, min(count // 3, len(harmful))) + rng.sample(other, min(count // 3, len(other)))
    sources = prose_sources()  # each source as likely as the others, whatever its size
    zeros = {c: 0 for c in categories}
    chosen += [{"text": rng.choice(rng.choice(sources)), "categories": zeros}
               for _ in range(count - len(chosen) if sources else 0)]
    return [{"text": rng.choice(OPENERS) + row["text"], "categories": dict(row["categories"]), "source": "opener"}
            for row in chosen]
