"""Text normalisation in front of the moderation classifiers, so that evasions collapse to plain text.

Every trick below turns a flagged message into something a classifier trained on plain English has
never seen; ``normalize`` undoes them in this order (each step relies on the ones before it):

1. Unicode NFKC (fullwidth, mathematical, circled letters -> ASCII), then combining marks dropped
   (accents, "Zalgo" strike-through) and zero-width, bidi, variation-selector and tag characters
   (U+E0000-U+E007F) removed.
2. Case folded, then Cyrillic and Greek look-alikes mapped to Latin letters (Cyrillic "\u043a\u0456ll" -> "kill").
3. Runs of three or more single characters split by spaces or punctuation joined ("k i l l",
   "k.i.l.l", "k-1-l-l" -> "kill"), when the run holds a letter (so "1 2 3" stays); a run that
   spelled several words is split back into them with the corpus vocabulary (``segment``:
   "g o k i l l y o u r s e l f" -> "go kill yourself").
4. Leetspeak folded inside words that hold a letter ("k1ll", "h4te", "$uicide", "sh!t"); pure
   numbers, and number-plus-unit tokens like "3rd" or "10pm", are left alone.
5. Dots, asterisks, underscores and hyphens between letters dropped ("ki.ll", "self-harm"),
   long repeats cut to two ("kiiiill" -> "kiill"), whitespace collapsed.

The output is for classifiers and keyword lists only, never shown to anyone. Training runs every
row through the same function, so whatever it does to benign text it does on both sides.
"""

from __future__ import annotations

# ruff: noqa: RUF001 - the look-alike table is the point of this module
import functools
import math
import re
import unicodedata
from pathlib import Path

_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f"
    "\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f\U000e0100-\U000e01ef]"
)

# Lower-case look-alikes only: case folding runs first.
_HOMOGLYPHS = {
    # Cyrillic
    "а": "a", "в": "b", "г": "r", "д": "d", "е": "e", "ё": "e", "ж": "x", "з": "3", "и": "u", "й": "u",
    "к": "k", "л": "n", "м": "m", "н": "h", "о": "o", "п": "n", "р": "p", "с": "c", "т": "t", "у": "y",
    "ф": "f", "х": "x", "ц": "u", "ч": "4", "ш": "w", "щ": "w", "ъ": "b", "ы": "bi", "ь": "b", "э": "e",
    "ю": "io", "я": "r", "є": "e", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d", "һ": "h", "ԛ": "q",
    "ԝ": "w", "ү": "y", "ҝ": "k", "ӏ": "l", "ɡ": "g",
    # Greek
    "α": "a", "β": "b", "γ": "y", "δ": "d", "ε": "e", "ζ": "z", "η": "n", "θ": "o", "ι": "i", "κ": "k",
    "λ": "l", "μ": "u", "ν": "v", "ξ": "e", "ο": "o", "π": "n", "ρ": "p", "σ": "o", "ς": "s", "τ": "t",
    "υ": "u", "φ": "f", "χ": "x", "ψ": "w", "ω": "w",
    # Latin variants NFKC keeps
    "ı": "i", "ȷ": "j", "ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ŧ": "t", "ß": "ss", "æ": "ae", "œ": "oe",
    "ɑ": "a", "ɩ": "i", "ʟ": "l", "ᴋ": "k", "ᴄ": "c", "ᴏ": "o", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ᴢ": "z",
    "ᴀ": "a", "ʙ": "b", "ᴅ": "d", "ᴇ": "e", "ғ": "f", "ɢ": "g", "ʜ": "h", "ɪ": "i", "ᴊ": "j", "ᴍ": "m",
    "ɴ": "n", "ᴘ": "p", "ǫ": "q", "ʀ": "r", "ꜱ": "s", "ᴛ": "t", "ʏ": "y",
}
_HOMOGLYPH_RE = re.compile("[" + "".join(_HOMOGLYPHS) + "]")
_HAS_FOREIGN = re.compile(r"[^\x00-\x7f]")
_COMBINING = re.compile("[\u0300-\u036f\u0483-\u0489\u0591-\u05bd\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")

# Typographic quotes as their ASCII forms, so "don\u2019t" and "don't" read alike (NFKC keeps them apart).
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"'})
_LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
         "@": "a", "$": "s", "!": "i", "|": "l", "€": "e", "£": "l"}
_LEET_TABLE = str.maketrans(_LEET)
_SINGLE = r"[a-z0-9@$]"
_SEP = r"(?:[ \t.\-_*·•~+,'/\\|:]{1,3})"
# A separator between the run and punctuation belongs to the run ("m.u.s.l.i.m.s.." is "muslims.").
_SPACED_RUN = re.compile(
    rf"(?<![a-z0-9@$]){_SINGLE}(?:{_SEP}{_SINGLE}){{2,}}(?![a-z0-9@$])(?:[.\-](?=[.,!?;:'\")\]]))?")
_SEP_ONLY = re.compile(_SEP)
# A word with digits or leet symbols in it; the symbols only count before a letter ("sh!t", not "hi!").
# Only from a word's start (the look-behind): otherwise each position of a long word without a digit
# rescans it to its end, quadratic in the word's length.
_LEET_WORD = re.compile(r"(?<![a-z0-9@$!|€£])[a-z0-9@$!|€£]*[0-9@$!|€£][a-z0-9@$!|€£]*")
# A text with two or more leet words ("y0u 533m", "h4v3 l05t") is written in leetspeak throughout: its
# short all-digit words are letters too ("533" -> "see", "4" -> "a", "15" -> "is", "3nd" -> "end").
LEET_TEXT_WORDS, LEET_DIGITS_MAX = 2, 3
_TRAILING = re.compile(r"[@$!|€£]+$")
_TRAILING_IN_LEET_TEXT = re.compile(r"!+$")  # in a leet text "w0rthl3$$" ends in letters; "hi!" still ends in "!"
# Numbers with a unit or an ordinal stay as they are ("3rd", "10pm", "5k"); anything else with a digit
# among letters is leetspeak ("4ll", "1n", "0f", "k1ll").
_NUMBER_WITH_UNIT = re.compile(
    r"\d+x\d+|\d+(?:st|nd|rd|th|s|am|pm|k|m|b|p|x|d|g|h|kg|km|cm|mm|ml|mb|gb|tb|kb|px|ms|hz|yo|yr|yrs|hr|hrs|min|lb|lbs|oz)")
_INNER_PUNCT = re.compile(r"(?<=[a-z])[.*_\-](?=[a-z])")
_REPEATS = re.compile(r"(.)\1{2,}")
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r" +(?=[.,!?;:](?:\s|$))")
# Pieces of up to two letters that a run of spaced letters may be split into; any other short piece
# ("c odd ling", "friend o", "m i grants") means the run is one word the vocabulary does not know.
_SHORT_WORDS = frozenset({"a", "i", "u", "am", "an", "as", "at", "be", "by", "do", "go", "he", "hi", "if", "in", "is",
                          "it", "me", "my", "no", "of", "oh", "ok", "on", "or", "so", "to", "up", "ur", "us", "we",
                          "ya", "yo"})


def _join_run(match: re.Match) -> str:
    run = match.group(0).rstrip(".-")
    if not any(c.isalpha() for c in run):
        return match.group(0)
    # The commonest separator is the one between letters; a different one that holds a space is a
    # gap between words ("k i l l  y o u", "k.i.l.l y.o.u"), so each word is joined on its own.
    seps = _SEP_ONLY.findall(run)
    # a tie ("i'm a") goes to the separator that is not a space, so the space stays a word gap
    between = max(sorted(set(seps)), key=lambda sep: (seps.count(sep), not sep.isspace()))
    words = [""]
    for i, piece in enumerate(_SEP_ONLY.split(run)):
        sep = seps[i - 1] if i else ""
        if sep != between and "'" in sep:
            words[-1] += "'"  # "d o n ' t" is "don't"
        elif sep != between and any(c.isspace() for c in sep):
            words[-1] += "".join(c for c in sep if c in ",:")  # "w.h.a.t., n.o.w" is "what, now"
            words.append("")
        words[-1] += piece
    words = [_REPEATS.sub(r"\1\1", w.translate(_LEET_TABLE)) for w in words if w]
    # Gaps between words were written out: each word is whole. Without them, the run may be several.
    return " ".join(words) if len(words) > 1 else segment(words[0]) if words else ""


# A run that is a known word plus one of these endings is a word too ("studs", not "stud s").
_ENDINGS = ("s", "es", "d", "ed", "ing", "er", "ers", "ly")
_WORDS_FILE = Path(__file__).resolve().parent / "normalize_words.txt"


@functools.cache
def _word_costs() -> tuple[dict[str, float], int]:
    """Zipf costs of the vocabulary (rarer words cost more) and its longest word."""
    words = [w for w in _WORDS_FILE.read_text().split("\n") if w and not w.startswith("#")]
    scale = math.log(len(words))
    return {w: math.log((rank + 1) * scale) for rank, w in enumerate(words)}, max(map(len, words))


def segment(run: str) -> str:
    """A run of letters split into the likeliest words ("gokillyourself" -> "go kill yourself").

    Dynamic programming over the corpus vocabulary (``normalize_words.txt``); a run that is itself a
    word, or shorter than five letters, is kept. Unknown stretches cost by length, so names survive.
    """
    costs, longest = _word_costs()
    if len(run) < 5 or run in costs or not run.isalpha() or any(
            run.endswith(end) and run[:-len(end)] in costs for end in _ENDINGS):
        return run
    best = [0.0] + [math.inf] * len(run)
    back = [0] * (len(run) + 1)
    for i in range(1, len(run) + 1):
        for j in range(max(0, i - longest), i):
            cost = best[j] + costs.get(run[j:i], 12.0 + 4.0 * (i - j))
            if cost < best[i]:
                best[i], back[i] = cost, j
    words, i = [], len(run)
    while i > 0:
        words.append(run[back[i]:i])
        i = back[i]
    if any(w not in costs or (len(w) <= 2 and w not in _SHORT_WORDS) for w in words):
        return run  # an unknown word ("coddling", "friendo"), not several known ones
    return " ".join(reversed(words))


def _fold_leet(match: re.Match, *, leet_text: bool = False) -> str:
    word = match.group(0)
    # "hi!" keeps its "!": a symbol counts as a letter only before one
    tail = (_TRAILING_IN_LEET_TEXT if leet_text else _TRAILING).search(word)
    if tail:
        word, tail = word[:tail.start()], tail.group(0)
    if leet_text and (any(c.isalpha() for c in word) or (word.isdigit() and len(word) <= LEET_DIGITS_MAX)):
        return word.translate(_LEET_TABLE) + (tail or "")
    if not any(c.isalpha() for c in word) or word.isdigit() or _NUMBER_WITH_UNIT.fullmatch(word):
        return word + (tail or "")
    return word.translate(_LEET_TABLE) + (tail or "")


def normalize(text: str) -> str:
    """The canonical form of ``text`` that the classifiers and keyword lists see (see module doc)."""
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)
    if _HAS_FOREIGN.search(text):
        text = unicodedata.normalize("NFKC", _COMBINING.sub("", unicodedata.normalize("NFKD", text)))
    text = text.casefold().translate(_QUOTES)
    if _HAS_FOREIGN.search(text):
        text = _HOMOGLYPH_RE.sub(lambda m: _HOMOGLYPHS[m.group(0)], text)
    text = _SPACED_RUN.sub(_join_run, text)
    leet_words = 0
    for match in _LEET_WORD.finditer(text):
        folded = _fold_leet(match)
        leet_words += folded != match.group(0) and any(c.isalpha() for c in folded)
        if leet_words >= LEET_TEXT_WORDS:
            break
    text = _LEET_WORD.sub(functools.partial(_fold_leet, leet_text=leet_words >= LEET_TEXT_WORDS), text)
    text = _INNER_PUNCT.sub("", text)
    text = _REPEATS.sub(r"\1\1", text)
    return _SPACE_BEFORE_PUNCT.sub("", _SPACES.sub(" ", text)).strip()
