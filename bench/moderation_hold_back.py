"""What the output hold-back buys and costs: harmful text shown before the template vs benign text's lag.

The chat streams an answer's words once a moderation check read them *and* ``hold_back`` characters
after them (serving/pipeline.py, ``TUNELOOP_MODERATION_HOLD_BACK_CHARS``). A larger hold-back lets the
check read more of a phrase before its first word is shown; a smaller one shows the first words sooner.
This bench streams real text word by word through ``ModeratedReply`` (the serving code) at several
hold-backs and prints, per hold-back:

- harmful, as written: the moderation corpus's dev split (``../shared/moderation-corpus/dev.jsonl.gz``,
  human labels, provenance and licences in its PROVENANCE.md), texts a human labelled harmful in any
  category and that the moderator flags when it reads them whole. ``caught`` is the share replaced by
  the template while streaming; ``shown`` the share of those where some words reached the user before
  the template replaced them, and the mean characters shown;
- harmful, after a benign opener: the same texts behind one of the openers below, as a model that
  complies writes them ("Sure, here it is: ..."); ``shown`` counts only characters past the opener,
  i.e. of the harmful text itself;
- benign answers: the base model's greedy answers to the chat bench's prompts
  (bench/moderation_fragments_answers.jsonl): ``lag``, the characters generated before the first
  words are shown (median, p95; about 4 characters per token of SmolLM2), and the share templated.

Each hold-back is run at each ``--confirm-words`` (a flag on an answer's first, shorter window is
confirmed on a window of that many words before the template replaces it; 0: the first flag replaces).

Run: .venv/bin/python bench/moderation_hold_back.py [--limit 600] [--hold-backs 1,6,12,24] [--confirm-words 0,12]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from serving.engine import GenerationParams  # noqa: E402
from serving.moderation import DEFAULT_FOLDER, Moderator  # noqa: E402
from serving.pipeline import CONFIRM_WORDS, HOLD_BACK_CHARS, ModeratedReply  # noqa: E402
from training.moderation_model import load_model  # noqa: E402

DEV = ROOT.parent / "shared" / "moderation-corpus" / "dev.jsonl.gz"
ANSWERS = ROOT / "bench" / "moderation_fragments_answers.jsonl"
OPENERS = ("Sure, here is what you asked for. ", "Okay. ", "Here you go: ", "Of course! Let me write it out. ")


class _Words:
    """An engine that streams a fixed text word by word and counts the characters it has handed out."""

    def __init__(self, text: str) -> None:
        self.text, self.generated = text, 0

    def stream(self, messages, params):
        for word in re.findall(r"\S+\s*", self.text):
            self.generated += len(word)
            yield word


def streamed(moderator: Moderator, text: str, hold_back: int = HOLD_BACK_CHARS,
             confirm_words: int = CONFIRM_WORDS) -> tuple[bool, int, int | None]:
    """(replaced, characters shown before the end or the template, characters generated at the first release)."""
    engine = _Words(text)
    reply = ModeratedReply(messages=[{"role": "user", "content": "Please help."}], engine=engine,
                           params=GenerationParams(), moderator=moderator, template_for=lambda cats: "[template]",
                           hold_back=hold_back, confirm_words=confirm_words)
    shown, first = 0, None
    for kind, value in reply.events():
        if kind == "replace":
            return True, shown, first
        if value and first is None:
            first = engine.generated
        shown += len(value)
    return False, shown, first


def harmful_texts(moderator: Moderator, limit: int) -> list[str]:
    with gzip.open(DEV, "rt") as lines:
        rows = [json.loads(line) for line in lines]
    harmful = sorted({r["text"] for r in rows if any(v == 1 for v in r["categories"].values())})
    random.Random(0).shuffle(harmful)
    return [t for t in harmful[:limit] if moderator._run(t).flagged]


def report_harmful(moderator: Moderator, texts: list[str], hold_back: int, confirm_words: int, opener: bool) -> str:
    caught = shown_any = shown_chars = 0
    for i, text in enumerate(texts):
        prefix = OPENERS[i % len(OPENERS)] if opener else ""
        replaced, shown, _ = streamed(moderator, prefix + text, hold_back, confirm_words)
        harmful_shown = max(0, shown - len(prefix))
        caught += replaced
        if replaced and harmful_shown:
            shown_any += 1
            shown_chars += harmful_shown
    return (f"caught {caught / len(texts):.3f}  harmful words shown before the template in "
            f"{shown_any}/{caught} = {shown_any / max(1, caught):.3f} (mean {shown_chars / max(1, shown_any):.0f} chars)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=str(DEFAULT_FOLDER))
    parser.add_argument("--limit", type=int, default=600, help="harmful dev texts sampled (seed 0)")
    parser.add_argument("--hold-backs", default="1,6,12,24")
    parser.add_argument("--confirm-words", default=str(CONFIRM_WORDS),
                        help="comma-separated: a flag on a shorter window waits for this many words (0: never)")
    args = parser.parse_args()
    model, _ = load_model(args.folder)
    moderator = Moderator(model, timeout_ms=None)
    texts = harmful_texts(moderator, args.limit)
    with ANSWERS.open() as lines:
        answers = [json.loads(line)["answer"] for line in lines]
    print(f"folder {args.folder}: {len(texts)} harmful dev texts the moderator flags whole (of {args.limit} sampled); "
          f"{len(answers)} benign base-model answers")
    for hold_back in [int(h) for h in args.hold_backs.split(",")]:
        for confirm in [int(c) for c in args.confirm_words.split(",")]:
            lags, templated = [], 0
            for answer in answers:
                replaced, _, first = streamed(moderator, answer, hold_back, confirm)
                templated += replaced
                if first is not None and not replaced:
                    lags.append(first)
            lags.sort()
            print(f"hold-back {hold_back:3d} chars, flags confirmed on {confirm} words")
            print(f"   harmful as written       {report_harmful(moderator, texts, hold_back, confirm, opener=False)}")
            print(f"   harmful after an opener  {report_harmful(moderator, texts, hold_back, confirm, opener=True)}")
            print(f"   benign answers           lag before the first words median {statistics.median(lags):.0f} "
                  f"p95 {lags[int(0.95 * (len(lags) - 1))]} max {lags[-1]} chars; templated {templated}/{len(answers)}")


if __name__ == "__main__":
    main()
