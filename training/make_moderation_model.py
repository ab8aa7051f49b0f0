"""Writes the template moderation set (serving/moderation_data/) and trains the shipped model from it + the corpus.

    .venv/bin/python -m training.make_moderation_model            # data + serving/moderation_model/
    .venv/bin/python -m training.make_moderation_model --data-only
    .venv/bin/python -m training.make_moderation_model --encoder-layers 2 --out var/mod2l/l2   # a variant elsewhere

The set is generated from hand-written templates and fillers with a fixed seed, so it is
reproducible and reviewable. Each category's templates are split: three quarters feed
``train.jsonl``, the rest only ``eval.jsonl``, so the eval figures measure new phrasings rather
than memorised ones. About half of every file is benign, much of it deliberately close to the
harmful side ("how do I kill a python process", "the history of the Holocaust", "I hate Mondays").
Eval rows also get evasions (leetspeak, zero-width characters, homoglyphs, spaced letters) on a
share of texts, benign and harmful alike, so the figures include the normaliser.

The shipped model (``SHIPPED``) learns from these rows *and* the public, human-labelled corpus in
training/moderation_corpus/ (real text; the templates only add the thin categories, violence/graphic
above all, that the corpus lacks): n-gram classifier + all-MiniLM-L6-v2 cut to 3 layers with a head,
served with int8 linear layers, plus 4,000 benign prefixes and spans as negatives (training/moderation_fragments.py:
what the stream checks first) and 3,000 corpus rows behind an assistant's opener (training/moderation_openers.py). Thresholds target precision 0.8 per category on the corpus' dev split.
Rebuilding embeds ~13k texts with the encoder: about 2 CPU-minutes (10-12 minutes wall on a loaded 2-core
machine).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "serving" / "moderation_data"
MODEL_DIR = ROOT / "serving" / "moderation_model"
# Every corpus positive up to 1,200 per category plus 3,500 negatives for the encoder head (the n-gram
# model reads the whole train split); the whole dev split for weights, thresholds and figures.
SHIPPED = {"corpus_negatives": 3500, "corpus_positives": 1200, "dev_rows": -1, "encoder": "package",
           "encoder_layers": 3, "encoder_max_length": 128, "quantize": "int8", "runtime": "onnx",
           "precision_target": 0.8, "dropout_copies": 0, "fragment_negatives": 4000, "opener_rows": 3000,
           "eval_fraction": 0.0}

TEMPLATES = DATA_DIR / "templates.json"
EVERYDAY = DATA_DIR / "everyday.txt"
EVERYDAY_EVAL = DATA_DIR / "everyday_eval.txt"
DEMO_LOOP = ROOT / "annotation" / "demo" / "loop.jsonl"
STORIES = ROOT / "training" / "corpus_data" / "tiny_stories.txt"


def fill(template: str, fillers: dict[str, list[str]], rng: random.Random) -> str:
    out = template
    for key, values in fillers.items():
        while "{" + key + "}" in out:
            out = out.replace("{" + key + "}", rng.choice(values), 1)
    return out


def split_templates(templates: list[str], rng: random.Random) -> tuple[list[str], list[str]]:
    order = templates[:]
    rng.shuffle(order)
    n_eval = max(1, len(order) // 4)
    return order[n_eval:], order[:n_eval]


def expand(templates: list[str], labels: list[str], per_template: int, rng: random.Random, *,
           fillers: dict[str, list[str]], per_fixed: int = 3, group: str = "") -> list[dict]:
    """Rows from templates; ``group`` + template number lets training hold out whole templates."""
    rows, seen = [], set()
    for number, template in enumerate(templates):
        for _ in range(per_template if "{" in template else per_fixed):
            text = stylize(fill(template, fillers, rng), rng)
            if text not in seen:
                seen.add(text)
                rows.append({"text": text, "categories": labels, "group": f"{group}{number}"})
    return rows


PREFIXES = ["", "", "", "hey, ", "ok so ", "listen, ", "please ", "honestly ", "lol ", "seriously, ", "so ",
            "i need help: ", "question: ", "be honest, "]
SUFFIXES = ["", "", "", " right now", " tonight", " please", " asap", " lol", " for real", " thanks",
            " and don't judge me", " haha"]


def stylize(text: str, rng: random.Random) -> str:
    """Openers, closers, capitalisation and punctuation as people type them (benign rows get the same)."""
    text = rng.choice(PREFIXES) + text + rng.choice(SUFFIXES)
    if rng.random() < 0.5:
        text = text[0].upper() + text[1:]
    return text + rng.choice(["", "", ".", "!", "?", " !!", "..."])


def evade(text: str, rng: random.Random) -> str:
    """One evasion a user might try; the normaliser must undo it."""
    words = text.split()
    i = max(range(len(words)), key=lambda k: (len(words[k]), rng.random()))
    word = words[i]
    kind = rng.choice(["leet", "zero-width", "homoglyph", "spaced", "dotted"])
    if kind == "leet":
        word = word.translate(str.maketrans({"i": "1", "e": "3", "a": "4", "o": "0", "s": "$"}))
    elif kind == "zero-width":
        word = "\u200b".join(word)
    elif kind == "homoglyph":
        word = word.translate(str.maketrans({"a": "\u0430", "e": "\u0435", "o": "\u043e", "i": "\u0456", "c": "\u0441", "p": "\u0440"}))
    else:
        word = (" " if kind == "spaced" else ".").join(word)
    words[i] = word
    return " ".join(words)


def build(seed: int = 13, per_template: int = 6) -> tuple[list[dict], list[dict]]:
    source = json.loads(TEMPLATES.read_text())
    fillers = source["fill"]
    rng = random.Random(seed)
    train, evals = [], []
    groups = [(g["labels"], g["templates"], per_template, 3) for g in source["harmful"]]
    groups += [([], source["benign_templates"], 2 * per_template, 1), ([], source["benign"], 1, 3)]
    for number, (labels, templates, n, fixed) in enumerate(groups):
        tr, ev = split_templates(templates, rng)
        train += expand(tr, labels, n, rng, fillers=fillers, per_fixed=fixed, group=f"t{number}.")
        evals += expand(ev, labels, n, rng, fillers=fillers, per_fixed=fixed, group=f"e{number}.")
    everyday_train, everyday_eval = everyday_rows(rng)
    train += everyday_train
    evals += everyday_eval
    evals = [{**row, "text": evade(row["text"], rng)} if rng.random() < 0.3 else row for row in evals]
    rng.shuffle(train)
    rng.shuffle(evals)
    return train, evals


def everyday_rows(rng: random.Random, stories: int = 300) -> tuple[list[dict], list[dict]]:
    """Benign everyday chat (hand-written: everyday.txt trains, everyday_eval.txt only evaluates), plus
    the demo loop's prompts and answers and a sample of story sentences (train only): ordinary words in
    ordinary sentences, so that char n-grams such as "country" or "show me" carry no category."""
    def lines(path: Path) -> list[str]:
        return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]

    tr, ev = lines(EVERYDAY), lines(EVERYDAY_EVAL)
    extra = []
    for line in DEMO_LOOP.read_text().splitlines():
        record = json.loads(line)
        extra += [record["prompt"], record["demonstration"]]
    sentences = [s.strip() + "." for line in STORIES.read_text().splitlines() for s in line.split(".") if s.strip()]
    extra += rng.sample(sentences, min(stories, len(sentences)))
    # Each hand-written line three times, styled differently: as much weight as a harmful template gets.
    train = [{"text": t if copy == 0 else stylize(t, rng), "categories": [], "group": f"everyday{i}"}
             for i, t in enumerate(tr) for copy in range(3)]
    train += [{"text": t, "categories": [], "group": f"extra{i}"} for i, t in enumerate(extra)]
    evals = [{"text": t, "categories": [], "group": f"everyday-eval{i}"} for i, t in enumerate(ev)]
    return train, evals


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-only", action="store_true")
    parser.add_argument("--encoder-layers", type=int, choices=range(1, 7), default=SHIPPED["encoder_layers"],
                        metavar="{1..6}", help="all-MiniLM-L6-v2 layers the encoder keeps (fewer: faster, weaker)")
    parser.add_argument("--out", type=Path, default=MODEL_DIR, help="model folder to write (default: the shipped one)")
    args = parser.parse_args(argv)
    train, evals = build()
    write_jsonl(DATA_DIR / "train.jsonl", train)
    write_jsonl(DATA_DIR / "eval.jsonl", evals)
    print(f"train.jsonl: {len(train)} rows ({sum(not r['categories'] for r in train)} benign); "
          f"eval.jsonl: {len(evals)} rows ({sum(not r['categories'] for r in evals)} benign)")
    if args.data_only:
        return
    from training.moderation import ModerationTrainConfig, train_moderation

    config = ModerationTrainConfig(**{**SHIPPED, "encoder_layers": args.encoder_layers})
    result = train_moderation(DATA_DIR / "train.jsonl", args.out, config)
    for cat, m in result["per_category"].items():
        print(f"{cat:18s} AUPRC={m['auprc']} P={m['precision']} R={m['recall']} n={m['positives']}")


if __name__ == "__main__":
    main()
