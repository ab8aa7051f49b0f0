"""Moderation of chat inputs and outputs: normalisation, a hashed n-gram classifier, a lexicon, custom lists.

``load_moderator(folder)`` returns a ``Moderator`` whose ``check(text)`` runs, in this order:

1. ``normalize`` (serving/normalize.py): NFKC, invisible characters, homoglyphs, leetspeak and
   spaced letters, so "k 1 ll" and "k\u0456ll" (Cyrillic i) reach the classifier as "kill".
2. The classifier: one logistic regression per category over hashed word 1-2-grams and character
   3-5-grams of the normalised text (numpy only, no tokenizer, well under a millisecond per message).
   Scores are shifted so that 0.5 is each category's decision threshold (chosen on held-out data
   at training time), so callers compare every score with 0.5. One- and two-word messages get
   damped scores (``SHORT_DAMPING``): too little text for char n-grams to be trusted alone.
3. The lexicon: phrases so unambiguous ("kill myself", "child porn") that a match alone flags the
   category, whatever the classifier thinks.
4. Sub-categories raise their parents ("hate/threatening" implies "hate", "sexual/minors" implies
   "sexual", "violence/graphic" implies "violence").
5. ``extra_categories``: a project's own categories, each a list of keywords (matched as words on the
   normalised text) or ``re:``-prefixed regular expressions (matched on the normalised and on the raw
   text, case-insensitively).

Steps 1-5 run under a deadline (``timeout_ms``) on a small thread pool. If anything raises or the
deadline passes, the result is flagged with ``failed_closed=True`` and the error: a broken
moderator blocks the message instead of waving it through. A model folder holds ``config.json``
(format, categories, thresholds, lexicon, metrics) and ``model.safetensors`` (never pickle).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import logging
import math
import re
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from serving.custom_categories import CustomCategories
from serving.normalize import normalize

__all__ = ["CATEGORIES", "DEFAULT_LEXICON", "HashedClassifier", "ModerationResult", "Moderator",
           "load_moderator", "normalize"]

log = logging.getLogger(__name__)

CATEGORIES = ("sexual", "sexual/minors", "hate", "hate/threatening", "harassment", "self-harm",
              "violence", "violence/graphic")
PARENTS = {"sexual/minors": "sexual", "hate/threatening": "hate", "violence/graphic": "violence"}
FORMAT = "tuneloop-moderation"
DEFAULT_FOLDER = Path(__file__).resolve().parent / "moderation_model"
LEXICON_SCORE = 0.99
# A message of one or two words gives the n-gram classifier little evidence ("one" once scored as
# hate): its scores are damped there, so only a confident score (>= 0.5 / 0.6 shifted) flags it.
# The lexicon and custom categories apply in full.
SHORT_WORDS, SHORT_DAMPING = 3, 0.6

DEFAULT_LEXICON: dict[str, list[str]] = {
    "sexual": ["blowjob", "handjob", "send nudes", "send me nudes", "pornhub", "xxx porn", "deepthroat",
               "explicit sex scene"],
    "sexual/minors": ["child porn", "childporn", "kiddie porn", "pedo porn", "lolicon", "shotacon",
                      "underage nudes", "nude children", "naked children", "sex with a child", "sex with a minor",
                      "sex with kids", "nudes of kids", "nudes of minors"],
    "hate": ["subhuman", "untermensch", "heil hitler", "white power", "master race", "sieg heil"],
    "hate/threatening": ["gas the jews", "kill all muslims", "kill all jews", "kill all immigrants",
                         "exterminate all", "race war now", "hang all the"],
    "harassment": ["kill yourself", "go kill yourself", "kys", "neck yourself", "go die in a hole",
                   "worthless piece of shit"],
    "self-harm": ["kill myself", "killing myself", "end my life", "ending my life", "want to die",
                  "slit my wrists", "cut myself", "cutting myself", "hang myself", "commit suicide",
                  "suicide method", "suicide methods", "painless way to die", "overdose on purpose"],
    "violence": ["i will kill you", "i'm going to kill you", "im going to kill you", "i will murder",
                 "shoot up the school", "school shooting plan", "stab you", "pipe bomb"],
    "violence/graphic": ["disembowel", "disemboweled", "entrails", "dismembered body", "skinned alive",
                         "eyes gouged out", "guts spilled"],
}


@dataclass
class ModerationResult:
    flagged: bool
    categories: dict[str, bool]
    scores: dict[str, float]
    failed_closed: bool = False
    error: str = ""


# --- features ---

_WORD = re.compile(r"[a-z0-9']+")
_CHAR_NS = (3, 4, 5)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_BASE = np.uint64(1_000_003)


def hashed_features(norm: str, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """Sparse (indices, values) of ``norm``: word 1-2-grams and char 3-5-grams, log counts, L2-normalised.

    Char n-grams are hashed with a vectorised polynomial hash over the code points (no Python loop
    per n-gram); words with CRC32. Both are stable across processes, unlike ``hash()``.
    ``n_features`` must be a power of two.
    """
    bits = np.uint64(64 - int(math.log2(n_features)))
    padded = f" {norm} "
    codes = np.frombuffer(padded.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    parts = []
    with np.errstate(over="ignore"):
        for n in _CHAR_NS:
            if len(codes) < n:
                continue
            h = np.full(len(codes) - n + 1, np.uint64(n), dtype=np.uint64)
            for k in range(n):
                h = h * _BASE + codes[k:len(codes) - n + 1 + k]
            parts.append((h * _MIX) >> bits)
    words = _WORD.findall(norm)
    grams = [f"w {w}" for w in words] + [f"b {a} {b}" for a, b in itertools.pairwise(words)]
    blocks = []
    if parts:
        blocks.append(np.concatenate(parts).astype(np.int64))
    if grams:
        blocks.append(np.fromiter((zlib.crc32(g.encode()) & (n_features - 1) for g in grams), dtype=np.int64,
                                  count=len(grams)))
    if not blocks:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    # Characters and words each get unit norm, so a few content words weigh as much as the many
    # character n-grams around them.
    idx_parts, val_parts = [], []
    for block in blocks:
        idx, counts = np.unique(block, return_counts=True)
        vals = np.log1p(counts).astype(np.float32)
        idx_parts.append(idx)
        val_parts.append(vals / (np.linalg.norm(vals) * math.sqrt(len(blocks))))
    return np.concatenate(idx_parts), np.concatenate(val_parts)


# --- classifier ---

class HashedClassifier:
    """Per-category logistic regression over ``hashed_features``; ``scores`` puts each threshold at 0.5."""

    def __init__(self, categories: Iterable[str], weight: np.ndarray, bias: np.ndarray,
                 thresholds: dict[str, float] | None = None) -> None:
        self.categories = tuple(categories)
        self.weight = np.ascontiguousarray(weight, dtype=np.float32)
        self.bias = np.asarray(bias, dtype=np.float32)
        self.n_features = self.weight.shape[0]
        if self.weight.shape[1] != len(self.categories) or self.n_features & (self.n_features - 1):
            raise ValueError("weight must be (power of two, number of categories)")
        thresholds = thresholds or {}
        self.thresholds = {c: float(thresholds.get(c, 0.5)) for c in self.categories}
        self.offset = np.array([_logit(self.thresholds[c]) for c in self.categories], dtype=np.float32)

    def logits(self, norm: str) -> np.ndarray:
        idx, vals = hashed_features(norm, self.n_features)
        return vals @ self.weight[idx] + self.bias

    def probabilities(self, norm: str) -> np.ndarray:
        """Raw sigmoid outputs, before the threshold shift (what training calibrates)."""
        return _sigmoid(self.logits(norm))

    def scores(self, norm: str) -> dict[str, float]:
        shifted = _sigmoid(self.logits(norm) - self.offset)
        return {c: float(s) for c, s in zip(self.categories, shifted, strict=True)}

    @classmethod
    def from_folder(cls, folder: str | Path) -> tuple[HashedClassifier, dict]:
        from safetensors.numpy import load_file

        folder = Path(folder)
        config = read_config(folder)
        tensors = load_file(str(folder / "model.safetensors"))
        return cls(config["categories"], tensors["weight"], tensors["bias"], config.get("thresholds")), config

    def save(self, folder: str | Path, *, lexicon: dict[str, list[str]], extra: dict | None = None) -> None:
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({"weight": self.weight.astype(np.float16), "bias": self.bias.astype(np.float32)},
                  str(folder / "model.safetensors"))
        config = {"format": FORMAT, "version": 1, "categories": list(self.categories),
                  "n_features": self.n_features, "features": {"word_ngrams": [1, 2], "char_ngrams": list(_CHAR_NS)},
                  "thresholds": self.thresholds, "lexicon": lexicon, **(extra or {})}
        (folder / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True))


def read_config(folder: str | Path) -> dict:
    path = Path(folder) / "config.json"
    config = json.loads(path.read_text())
    if config.get("format") != FORMAT:
        raise ValueError(f"{folder} is not a moderation model folder (config.json format is not {FORMAT!r})")
    return config


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


# --- keyword layers ---

# Threats against a group: a people word and an act of mass violence within a few words of each other
# ("hang every one of the X from the lampposts", "X need to be wiped off the earth"). The n-gram
# classifier misses these when the phrasing is new; the two vocabularies generalise where templates
# do not. Known cost: a history question in the same words ("how did the Nazis kill Jews") is held back.
THREAT_GROUPS = (
    "immigrants", "migrants", "refugees", "foreigners", "muslims", "jews", "christians", "hindus", "sikhs",
    "buddhists", "atheists", "black people", "blacks", "white people", "whites", "asians", "arabs", "africans",
    "mexicans", "latinos", "indians", "chinese people", "gypsies", "roma", "gay people", "gays", "lesbians",
    "homosexuals", "trans people", "women", "disabled people", "minorities",
)
THREAT_ACTS = (
    "kill", "killed", "killing", "murder", "slaughter", "exterminate", "exterminated", "genocide", "massacre",
    "lynch", "lynched", "hang", "hanged", "gas", "gassed", "shoot", "burn", "butcher", "eradicate", "wipe out",
    "wiped out", "wiped off", "get rid of", "death to", "round up", "hunt down", "purge", "cleanse",
)
THREAT_WINDOW = 8  # words between the group and the act
THREAT_CATEGORIES = ("hate/threatening", "hate", "violence")


def _phrase_hits(words: list[str], wanted: frozenset[tuple[str, ...]], firsts: frozenset[str]) -> list[int]:
    """Positions in ``words`` where one of the (one- to three-word) phrases of ``wanted`` starts."""
    return [i for i, word in enumerate(words)
            if word in firsts and any(tuple(words[i:i + n]) in wanted for n in (1, 2, 3))]


_GROUP_WORDS = frozenset(tuple(p.split()) for p in THREAT_GROUPS)
_ACT_WORDS = frozenset(tuple(p.split()) for p in THREAT_ACTS)
_GROUP_FIRSTS = frozenset(p[0] for p in _GROUP_WORDS)
_ACT_FIRSTS = frozenset(p[0] for p in _ACT_WORDS)


def group_threat(norm: str) -> bool:
    words = _WORD.findall(norm)
    groups = _phrase_hits(words, _GROUP_WORDS, _GROUP_FIRSTS)
    if not groups:
        return False
    acts = _phrase_hits(words, _ACT_WORDS, _ACT_FIRSTS)
    return any(abs(g - a) <= THREAT_WINDOW for g in groups for a in acts)


class Lexicon:
    """Phrase -> category lookup over word n-grams of the normalised text.

    A dictionary probe per word (and per n-gram from a word that starts some phrase) instead of a
    regex alternation over every phrase, which costs milliseconds on a long answer. Each phrase also
    matches with its words run together, so "k i l l y o u r s e l f" (normalised to
    "killyourself") still hits "kill yourself".
    """

    def __init__(self, lexicon: dict[str, list[str]]) -> None:
        self.phrases: dict[str, set[str]] = {}
        self.starts: set[str] = set()
        self.longest = 1
        for cat, phrases in lexicon.items():
            for phrase in phrases:
                words = _WORD.findall(normalize(phrase))
                if not words:
                    continue
                self.longest = max(self.longest, len(words))
                self.starts.add(words[0])
                for key in (" ".join(words), "".join(words)):
                    self.phrases.setdefault(key, set()).add(cat)

    def categories(self, norm: str) -> set[str]:
        words = _WORD.findall(norm)
        found: set[str] = set()
        phrases = self.phrases
        for i, word in enumerate(words):
            if word in phrases:
                found |= phrases[word]
            if word in self.starts:
                for n in range(2, min(self.longest, len(words) - i) + 1):
                    key = " ".join(words[i:i + n])
                    if key in phrases:
                        found |= phrases[key]
        return found


# --- the pipeline ---

_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="moderation")


@dataclass
class Moderator:
    """The moderation pipeline. ``classifier`` is anything with ``categories`` and ``scores(norm)``."""

    classifier: object
    lexicon: dict[str, list[str]] = field(default_factory=dict)
    extra_categories: dict[str, list[str]] = field(default_factory=dict)
    timeout_ms: float | None = 50

    def __post_init__(self) -> None:
        self._lexicon = Lexicon(self.lexicon)
        self._extra = CustomCategories(self.extra_categories)

    @property
    def categories(self) -> tuple[str, ...]:
        own = getattr(self.classifier, "categories", None) or ()
        names = list(CATEGORIES) + [c for c in own if c not in CATEGORIES]
        return tuple(names + [c for c in self._extra if c not in names])

    def check(self, text: str) -> ModerationResult:
        """Moderate one message; never raises: errors and timeouts come back flagged (fail closed)."""
        try:
            if not self.timeout_ms or self.timeout_ms <= 0:
                return self._run(text)
            future = _POOL.submit(self._run, text)
            try:
                return future.result(timeout=self.timeout_ms / 1000)
            except concurrent.futures.TimeoutError:
                future.cancel()
                return self._closed(f"moderation timed out after {self.timeout_ms:g} ms")
        except Exception as exc:  # any failure blocks the message
            return self._closed(f"moderation failed: {type(exc).__name__}: {exc}")

    def _run(self, text: str) -> ModerationResult:
        norm = normalize(text or "")
        scores = {c: 0.0 for c in self.categories}
        if norm:
            damping = SHORT_DAMPING if len(norm.split()) < SHORT_WORDS else 1.0
            for cat, score in self.classifier.scores(norm).items():
                scores[cat] = float(score) * damping
            for cat in self._lexicon.categories(norm):
                scores[cat] = max(scores.get(cat, 0.0), LEXICON_SCORE)
            if group_threat(norm):
                for cat in THREAT_CATEGORIES:
                    scores[cat] = max(scores.get(cat, 0.0), LEXICON_SCORE)
        for name in self._extra.matches(norm, text or ""):
            scores[name] = 1.0
        for child, parent in PARENTS.items():
            if child in scores and parent in scores:
                scores[parent] = max(scores[parent], scores[child])
        categories = {c: s >= 0.5 for c, s in scores.items()}
        return ModerationResult(flagged=any(categories.values()), categories=categories,
                                scores={c: round(s, 6) for c, s in scores.items()})

    def _closed(self, error: str) -> ModerationResult:
        log.warning("moderation failed closed: %s", error)
        return ModerationResult(flagged=True, categories={c: False for c in self.categories},
                                scores={c: 0.0 for c in self.categories}, failed_closed=True, error=error)


def load_moderator(folder: str | Path | None = None, *, extra_categories: dict[str, list[str]] | None = None,
                   timeout_ms: float = 50) -> Moderator:
    """The moderator of a model folder (None: the one shipped in serving/moderation_model/).

    Raises ``FileNotFoundError``/``ValueError`` for a missing or foreign folder: a deployment must
    not silently run without moderation.
    """
    classifier, config = HashedClassifier.from_folder(folder or DEFAULT_FOLDER)
    lexicon = config.get("lexicon", DEFAULT_LEXICON)
    moderator = Moderator(classifier, lexicon=lexicon, extra_categories=dict(extra_categories or {}),
                          timeout_ms=timeout_ms)
    moderator._run("warm up the regexes and numpy")
    return moderator


def timed_check(moderator: Moderator, text: str) -> tuple[ModerationResult, float]:
    """``check`` plus its wall time in milliseconds (for benchmarks and event logs)."""
    start = time.perf_counter()
    result = moderator.check(text)
    return result, (time.perf_counter() - start) * 1000
