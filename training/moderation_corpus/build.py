#!/usr/bin/env python3
# ruff: noqa - vendored from the corpus build (../shared/moderation-corpus/build.py)
"""Rebuild the moderation corpus (train/dev JSONL.gz) from public GitHub snapshots.

Inputs are bare git mirrors (`git clone --mirror`)
under --mirror-root, named <owner>+<name>/repo.  Each source is read at the commit pinned below;
the script refuses a mirror whose HEAD differs unless --any-commit is given.

    python build.py --mirror-root MIRRORS --out .

Row schema:
  {"text": str,
   "categories": {cat: 1 | 0 | null for the 8 OpenAI categories},   # null = source says nothing
   "source": "<owner/repo>@<short commit>:<path>" (";"-joined when a duplicate text came from several),
   "label_kind": "human" | "source-assumed",   # source-assumed = benign-by-source (MedQuAD, SGD)
   "aux": {original source labels},            # e.g. {"davidson_class": 1} or {"toxic": 1}
   "weak": {cat: 1}  (optional)                # weak, not human per-row labels; NOT in categories
  }
"""
import argparse, collections, functools, csv, gzip, hashlib, html, io, json, os, random, re, subprocess, sys

CATS = ["sexual", "sexual/minors", "hate", "hate/threatening", "harassment",
        "self-harm", "violence", "violence/graphic"]

SOURCES = {  # repo -> pinned commit
    "t-davidson/hate-speech-and-offensive-language": "cb50f7e9eb855a99abc51423bf40df0e26d6fe30",
    "microsoft/TOXIGEN": "01517e814639e0334c920a3c502036c8158aac87",
    "paul-rottger/hatecheck-data": "d84302298ceeb34f4b0dde2d8a1f4932c2caa612",
    "surge-ai/toxicity": "ea80324b95ed7e3cc787bdb6faeb763fcc0ae258",
    "paul-rottger/exaggerated-safety": "d7bb5bd738c1fcbc36edd83d5e7d1b71a3e2d84d",
    "thu-coai/DiaSafety": "5106a041b1c7e36f30e02a97c44897a7f2057278",
    "Vicomtech/hate-speech-dataset": "b802137e8314c38a8d4faa965f9908d6c8e7a84d",
    "mlcommons/ailuminate": "769cc2be9d20c8d4fb26ce53b68865ed41dfb8e2",
    "bertiev/SimpleSafetyTests": "d7aee9a9422a5a5488f478fd79c2479c891c0f3b",
    "abachaa/MedQuAD": "577bd37b96c02d1833b2c9eed2de9f96964e96cb",
    "google-research-datasets/dstc8-schema-guided-dialogue": "e852981ae34990f4358979625854259302feaa78",
    "JailbreakBench/artifacts": "909e68c01d94222b8ad2e397a017e2e12e2adb73",
    "nbertagnolli/counsel-chat": "e202e19c5002482f4f6631af754c276dd9adf7f2",
}

ARGS = None


def gitdir(repo):
    return os.path.join(ARGS.mirror_root, repo.replace("/", "+"), "repo")


@functools.lru_cache(maxsize=None)
def commit(repo):
    c = subprocess.run(["git", "--git-dir", gitdir(repo), "rev-parse", "HEAD"], capture_output=True,
                       text=True, check=True).stdout.strip()
    if c != SOURCES[repo] and not ARGS.any_commit:
        sys.exit(f"{repo}: mirror HEAD {c} != pinned {SOURCES[repo]} (use --any-commit)")
    return SOURCES[repo] if not ARGS.any_commit else c


def show(repo, path):
    return subprocess.run(["git", "--git-dir", gitdir(repo), "show", f"{commit(repo)}:{path}"],
                          capture_output=True, check=True).stdout.decode("utf-8", "replace")


def ls(repo, prefix):
    out = subprocess.run(["git", "--git-dir", gitdir(repo), "ls-tree", "-r", "--name-only", commit(repo)] + ([prefix] if prefix else []),
                         capture_output=True, text=True, check=True).stdout
    return [l for l in out.splitlines() if l]


def show_many(repo, paths):
    """{path: text} for many blobs via one `git cat-file --batch` (missing blobs are left out)."""
    c = commit(repo)
    inp = "".join(f"{c}:{p}\n" for p in paths).encode()
    out = subprocess.run(["git", "--git-dir", gitdir(repo), "cat-file", "--batch"], input=inp,
                         capture_output=True, check=True).stdout
    res, i = {}, 0
    for p in paths:
        j = out.index(b"\n", i)
        hdr = out[i:j].split()
        if len(hdr) == 3 and hdr[1] == b"blob":
            n = int(hdr[2])
            res[p] = out[j + 1:j + 1 + n].decode("utf-8", "replace")
            i = j + 1 + n + 1
        else:
            i = j + 1
    return res


def src(repo, path):
    return f"{repo}@{commit(repo)[:8]}:{path}"


def C(default=None, **kw):
    """categories dict; keys given with python-safe names: sexual_minors, hate_threatening, self_harm, violence_graphic"""
    m = {"sexual_minors": "sexual/minors", "hate_threatening": "hate/threatening", "self_harm": "self-harm",
         "violence_graphic": "violence/graphic"}
    d = {c: default for c in CATS}
    for k, v in kw.items():
        d[m.get(k, k)] = v
    return d


def row(text, categories, source, aux=None, kind="human", weak=None):
    r = {"text": text, "categories": categories, "source": source, "label_kind": kind, "aux": aux or {}}
    if weak:
        r["weak"] = weak
    return r


def clean(t):
    t = html.unescape(t or "")
    t = re.sub(r"[ \t\r\f\v]+", " ", t)
    t = re.sub(r"\n{3,}", "\n\n", t)
    return t.strip()


# ---------------------------------------------------------------- sources

def davidson():
    repo, path = "t-davidson/hate-speech-and-offensive-language", "data/labeled_data.csv"
    s = src(repo, path)
    for r in csv.DictReader(io.StringIO(show(repo, path))):
        k = int(r["class"])
        t = clean(r["tweet"])
        if k == 0:
            yield row(t, C(hate=1), s, {"davidson_class": "hate_speech"})
        elif k == 1:
            yield row(t, C(hate=0), s, {"davidson_class": "offensive_language"})
        else:  # neither hateful nor offensive
            yield row(t, C(hate=0, harassment=0), s, {"davidson_class": "neither"})


def toxigen():
    repo = "microsoft/TOXIGEN"
    for path in ls(repo, "prompts/"):
        m = re.match(r"prompts/(hate|neutral)_(.+)_1k\.txt$", path)
        if not m:
            continue
        s, seen = src(repo, path), set()
        for line in show(repo, path).splitlines():
            for sent in line.split("\\n"):
                sent = clean(sent.lstrip("-").strip())
                if len(sent) < 8 or sent in seen:
                    continue
                seen.add(sent)
                if m.group(1) == "hate":
                    yield row(sent, C(hate=1), s, {"toxigen_group": m.group(2), "toxigen_set": "hate"})
                else:  # curated benign statements about the group
                    yield row(sent, C(0), s, {"toxigen_group": m.group(2), "toxigen_set": "neutral"})


def hatecheck():
    repo, path = "paul-rottger/hatecheck-data", "test_suite_cases.csv"
    s = src(repo, path)
    cases = list(csv.DictReader(io.StringIO(show(repo, path))))
    functionality = {r["case_id"]: r["functionality"] for r in cases}
    for r in cases:
        f, t = r["functionality"], clean(r["test_case"])
        aux = {"hatecheck_functionality": f, "label_gold": r["label_gold"]}
        # phrase_*, ref_subs_* and spell_* cases rewrite another case (ref_case_id): a rewritten threat
        # ("I think that Muslims should all be killed.", "D3ath to all immigrants.") is still a threat
        base = functionality.get(r["ref_case_id"], f)  # ids are integers written plainly; "" when none
        if base != f:
            aux["hatecheck_ref_functionality"] = base
        if r["label_gold"] == "hateful":
            if f in ("threat_dir_h", "threat_norm_h"):
                yield row(t, C(hate=1, hate_threatening=1, violence=1), s, aux)
            elif base in ("threat_dir_h", "threat_norm_h"):  # violence left unsaid, see PROVENANCE.md
                yield row(t, C(hate=1, hate_threatening=1), s, aux)
            else:
                yield row(t, C(hate=1, hate_threatening=0), s, aux)
        else:
            c = C(hate=0, hate_threatening=0)
            if f == "target_indiv_nh":      # abuse aimed at an individual, not for a protected trait
                c["harassment"] = 1
            elif f in ("ident_neutral_nh", "ident_pos_nh", "target_obj_nh", "slur_homonym_nh", "negate_neg_nh"):
                c["harassment"] = 0
                c["violence"] = 0
            yield row(t, c, s, aux)


def surge():
    repo, path = "surge-ai/toxicity", "toxicity_en.csv"
    s = src(repo, path)
    for r in csv.DictReader(io.StringIO(show(repo, path))):
        t = clean(r["text"])
        if r["is_toxic"].strip().lower() == "toxic":
            yield row(t, C(), s, {"toxic": 1})
        else:
            yield row(t, C(hate=0, harassment=0), s, {"toxic": 0})


def xstest():
    repo, path = "paul-rottger/exaggerated-safety", "xstest_prompts.csv"
    s = src(repo, path)
    for r in csv.DictReader(io.StringIO(show(repo, path))):
        t, aux = clean(r["prompt"]), {"xstest_type": r["type"], "xstest_label": r["label"]}
        if r["label"] == "safe":
            yield row(t, C(0), s, aux)     # written to be clearly safe despite trigger words
        elif r["type"] == "contrast_discr":
            yield row(t, C(hate=1), s, aux)
        else:
            yield row(t, C(), s, aux)       # unsafe, but of mixed kinds (violence, drugs, theft, self-harm)


def diasafety():
    repo = "thu-coai/DiaSafety"
    for split in ("train", "val", "test"):
        path = f"DiaSafety_dataset/{split}.json"
        s = src(repo, path)
        seen_ctx = set()
        for r in json.loads(show(repo, path)):
            cat, lab = r["category"], r["label"]
            resp, ctx = clean(r["response"]), clean(r["context"])
            aux = {"diasafety_category": cat, "diasafety_label": lab, "field": "response"}
            if cat == "Offending User":
                yield row(resp, C(harassment=1 if lab == "Unsafe" else 0), s, aux)
            elif lab == "Safe":
                yield row(resp, C(hate=0, harassment=0, self_harm=0), s, aux)
            # contexts of "Risk Ignorance" are posts chosen for mental-health risk (mostly r/depression,
            # r/SuicideWatch style); that is a selection, not a per-post self-harm label -> weak only.
            if cat == "Risk Ignorance" and ctx not in seen_ctx:
                seen_ctx.add(ctx)
                yield row(ctx, C(), s, {"diasafety_category": cat, "field": "context"}, weak={"self-harm": 1})


def stormfront():
    repo = "Vicomtech/hate-speech-dataset"
    meta = "annotations_metadata.csv"
    recs = [r for r in csv.DictReader(io.StringIO(show(repo, meta))) if r["label"] in ("hate", "noHate")]
    # 'relation' (needs the neighbouring sentences) and 'idk/skip' are dropped
    texts = show_many(repo, [f"all_files/{r['file_id']}.txt" for r in recs])
    for r in recs:
        t = clean(texts.get(f"all_files/{r['file_id']}.txt", ""))
        s = f"{repo}@{commit(repo)[:8]}:{meta}+all_files/"
        yield row(t, C(hate=1 if r["label"] == "hate" else 0), s, {"stormfront_label": r["label"]})


AIL = {  # hazard -> categories (AILuminate assigns one hazard per prompt; dedicated hazards exist for
         # sexual content, CSE, self-harm and hate, so those are 0 for prompts filed under another hazard)
    "cse": C(sexual_minors=1, self_harm=0, hate=0),
    "sxc_prn": C(sexual=1, sexual_minors=0, self_harm=0, hate=0),
    "ssh": C(self_harm=1, sexual=0, sexual_minors=0, hate=0),
    "hte": C(hate=1, sexual=0, sexual_minors=0, self_harm=0),
    "vcr": C(violence=1, sexual=0, sexual_minors=0, self_harm=0, hate=0),
    "src": C(sexual_minors=0, self_harm=0, hate=0),
}


def ailuminate():
    repo, path = "mlcommons/ailuminate", "airr_official_1.0_demo_en_us_prompt_set_release.csv"
    s = src(repo, path)
    other = C(sexual=0, sexual_minors=0, self_harm=0, hate=0)
    for r in csv.DictReader(io.StringIO(show(repo, path))):
        h = r["hazard"]
        yield row(clean(r["prompt_text"]), dict(AIL.get(h, other)), s,
                  {"ailuminate_hazard": h, "persona": r["persona"]})


SST = {"Suicide, Self-Harm, and Eating Disorders": C(self_harm=1, sexual=0, sexual_minors=0, hate=0),
       "Physical harm and Violence": C(violence=1, sexual=0, sexual_minors=0),
       "Child safety": C(),                      # mixes sexual abuse, grooming and physical abuse of children
       "Scams and fraud": C(self_harm=0, sexual=0, sexual_minors=0, hate=0),
       "Illegal and Highly Regulated items": C(sexual=0, sexual_minors=0, hate=0)}


def simplesafetytests():
    repo, path = "bertiev/SimpleSafetyTests", "SimpleSafetyTests - test cases.csv"
    s = src(repo, path)
    for r in csv.DictReader(io.StringIO(show(repo, path))):
        yield row(clean(r["prompts_final"]), dict(SST[r["harm_area"]]), s,
                  {"sst_harm_area": r["harm_area"], "sst_category": r["category"]})


def medquad(n_q=6000, n_a=3000):
    repo = "abachaa/MedQuAD"
    rng = random.Random(13)
    files = [p for p in ls(repo, "") if p.endswith(".xml")]
    rng.shuffle(files)
    qs, ans = [], []
    blobs = show_many(repo, files)
    for p in files:
        x = blobs.get(p, "")
        for q in re.findall(r"<Question[^>]*>(.*?)</Question>", x, re.S):
            qs.append((clean(q), p))
        for a in re.findall(r"<Answer>(.*?)</Answer>", x, re.S):
            a = clean(a)
            if len(a) > 80:
                ans.append((a[:700].rsplit(" ", 1)[0] if len(a) > 700 else a, p))
    rng.shuffle(qs); rng.shuffle(ans)
    seen = set()
    for t, p in qs[:n_q] + ans[:n_a]:
        if t in seen:
            continue
        seen.add(t)
        yield row(t, C(0), src(repo, p.split("/")[0] + "/"), {"medquad": 1}, kind="source-assumed")


def sgd(n=8000):
    repo = "google-research-datasets/dstc8-schema-guided-dialogue"
    rng = random.Random(17)
    utts = []
    paths = [p for p in ls(repo, "") if re.match(r"(train|dev|test)/dialogues_\d+\.json$", p)]
    blobs = show_many(repo, paths)            # blobs absent from the snapshot (>= 4 MiB) are skipped
    for p in paths:
        if p not in blobs:
            continue
        for dia in json.loads(blobs[p]):
            for turn in dia["turns"]:
                if turn["speaker"] == "USER" and len(turn["utterance"]) >= 25:
                    utts.append((clean(turn["utterance"]), p))
    rng.shuffle(utts)
    seen = set()
    for t, p in utts:
        if t.lower() in seen:
            continue
        seen.add(t.lower())
        yield row(t, C(0), src(repo, p.split("/")[0] + "/"), {"sgd_user_turn": 1}, kind="source-assumed")
        if len(seen) >= n:
            break


# JailbreakBench (JBB-Behaviors): 100 harmful goals, each with a fine-grained behavior name.  The 10 JBB
# categories are coarse and mixed (e.g. "Sexual/Adult content" holds porn requests, date-rape drugs and
# trafficking), so labels are set per behavior, only where the goal clearly fits an OpenAI category;
# everything else stays null.  Goals and PAIR rewrites are requests: they get the REQ labels.
JBB_REQ = {
    "Body shaming": C(harassment=1),
    "Xenophobia": C(hate=1),
    "Ableism": C(hate=1),
    "Sexism": C(hate=1, harassment=1),
    "Racial discrimination": C(hate=1, harassment=1),
    "Ageism": C(violence=1),
    "Enslavement": C(hate=1, hate_threatening=1, violence=1),
    "Holocaust glorification": C(hate=1, violence=1),
    "Sex discrimination": C(hate=1, harassment=1),
    "School shooting": C(violence=1),
    "Cannibalism": C(violence=1),
    "Torture": C(violence=1),
    "Eating disorder": C(self_harm=1),
    "Suicide": C(self_harm=1),
    "Ethnic genocide": C(hate=1, hate_threatening=1, violence=1),
    "Animal cruelty": C(violence=1),
    "Predatory stalking": C(harassment=1),
    "Porn generation": C(sexual=1, sexual_minors=0),
    "Sexual solicitation": C(sexual=1, sexual_minors=1),
    "Child pornography": C(sexual_minors=1),
    "Sexting": C(harassment=1),
    "Bestiality": C(sexual=1, sexual_minors=0),
    "Revenge porn": C(harassment=1),
    "Pedophilia": C(sexual_minors=1),
    "Blackmail": C(harassment=1),
}
# Model responses that JBB's judge marked jailbroken=True, for behaviors where any compliant answer
# necessarily has the property (a torture scene depicts violence; a pro-anorexia post promotes self-harm).
# Porn-generation answers are often tame outlines, so sexual is NOT set from them; graphic stays null.
JBB_RESP = {
    "Torture": C(violence=1), "School shooting": C(violence=1), "Cannibalism": C(violence=1),
    "Eating disorder": C(self_harm=1), "Suicide": C(self_harm=1),
    "Body shaming": C(harassment=1), "Sexism": C(harassment=1), "Racial discrimination": C(harassment=1, hate=1),
    "Sex discrimination": C(harassment=1), "Ethnic genocide": C(hate=1, violence=1),
    "Pedophilia": C(sexual_minors=1),
}


def jailbreakbench():
    repo = "JailbreakBench/artifacts"
    paths = [p for p in ls(repo, "attack-artifacts/") if p.endswith(".json")
             and "/test-artifact/" not in p and p.rsplit("/", 1)[1] not in ("attack-info.json", "evaluation.json", "submission.json")]
    blobs = show_many(repo, sorted(paths))
    goals = {}
    for p in sorted(blobs):
        method = p.split("/")[1]
        for x in json.loads(blobs[p])["jailbreaks"]:
            b, cat = x["behavior"], x["category"]
            aux = {"jbb_category": cat, "jbb_behavior": b, "split_group": f"jbb:{b}"}
            goals.setdefault(x["goal"], (aux, p))
            if method == "PAIR" and x.get("prompt"):
                yield row(clean(x["prompt"]), dict(JBB_REQ.get(b, C())), src(repo, p), {**aux, "field": "PAIR prompt"})
            if x.get("jailbroken") and b in JBB_RESP and x.get("response"):
                yield row(clean(x["response"])[:2000], dict(JBB_RESP[b]), src(repo, p),
                          {**aux, "field": "jailbroken response", "method": method})
    for g, (aux, p) in goals.items():
        yield row(clean(g), dict(JBB_REQ.get(aux["jbb_behavior"], C())), src(repo, p), {**aux, "field": "goal"})


def counselchat(max_chars=1000):
    """Licensed therapists' public answers to mental-health questions (incl. depression, self-harm,
    intimacy, trauma, domestic violence topics): safe support replies -> all 8 = 0 (source-assumed).
    Questions are not used (no per-question labels)."""
    repo, path = "nbertagnolli/counsel-chat", "data/20200325_counsel_chat.csv"
    s = src(repo, path)
    csv.field_size_limit(10 ** 8)
    seen = set()
    for r in csv.DictReader(io.StringIO(show(repo, path))):
        a = clean(r["answerText"])
        if len(a) < 60 or a in seen:
            continue
        seen.add(a)
        if len(a) > max_chars:
            a = a[:max_chars].rsplit(" ", 1)[0]
        yield row(a, C(0), s, {"counselchat_topic": r["topic"], "field": "answer"}, kind="source-assumed")


BUILDERS = [davidson, toxigen, hatecheck, surge, xstest, diasafety, stormfront, ailuminate, simplesafetytests, medquad, sgd,
            jailbreakbench, counselchat]


def norm_key(t):
    return re.sub(r"\W+", " ", t.lower()).strip()


def merge(a, b):
    """merge duplicate rows: a known label wins over null; 1 wins over 0 (conflicts counted)."""
    conflicts = 0
    for c in CATS:
        x, y = a["categories"][c], b["categories"][c]
        if x is None:
            a["categories"][c] = y
        elif y is not None and x != y:
            conflicts += 1
            a["categories"][c] = max(x, y)
    if b["source"] not in a["source"].split(";"):
        a["source"] += ";" + b["source"]
    a["aux"] = {**b["aux"], **a["aux"]}
    if "weak" in b:
        a["weak"] = {**b["weak"], **a.get("weak", {})}
    if b["label_kind"] == "human":
        a["label_kind"] = "human"
    return conflicts


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--mirror-root", required=True)
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--any-commit", action="store_true")
    ap.add_argument("--dev-frac", type=float, default=0.10)
    ap.add_argument("--seed", type=int, default=20240601)
    ARGS = ap.parse_args()

    rows, order, stats, conflicts = {}, [], collections.Counter(), 0
    for b in BUILDERS:
        n = 0
        for r in b():
            if not r["text"] or len(r["text"]) < 3:
                continue
            n += 1
            k = norm_key(r["text"])
            if not k:
                continue
            if k in rows:
                conflicts += merge(rows[k], r)
            else:
                rows[k] = r
                order.append(k)
        stats[b.__name__] = n
        print(f"{b.__name__:12s} rows read {n}", file=sys.stderr)

    # source-stratified random split: within each primary source, a seeded 10% goes to dev
    by_src = collections.defaultdict(list)
    for k in order:
        by_src[rows[k]["source"].split(";")[0].split("@")[0]].append(k)
    dev = set()
    for s, ks in sorted(by_src.items()):
        rng = random.Random(f"{ARGS.seed}:{s}")    # per-source RNG: adding a source leaves other splits unchanged
        groups = collections.defaultdict(list)    # rows sharing aux.split_group (e.g. one JBB behavior) stay together
        for k in ks:
            groups[rows[k]["aux"].get("split_group", k)].append(k)
        if len(groups) == len(ks):                # no groups: the original per-row split
            ks = sorted(ks, key=lambda k: hashlib.sha1(k.encode()).hexdigest())
            rng.shuffle(ks)
            dev.update(ks[: max(1, round(len(ks) * ARGS.dev_frac))])
        else:
            gs = sorted(groups, key=lambda g: hashlib.sha1(str(g).encode()).hexdigest())
            rng.shuffle(gs)
            for g in gs[: max(1, round(len(gs) * ARGS.dev_frac))]:
                dev.update(groups[g])

    out = {"train": [], "dev": []}
    for k in order:
        out["dev" if k in dev else "train"].append(rows[k])
    summary = {"rows_read": dict(stats), "duplicate_label_conflicts": conflicts}
    for split, rs in out.items():
        with gzip.open(os.path.join(ARGS.out, f"{split}.jsonl.gz"), "wt", encoding="utf-8") as f:
            for r in rs:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        pos = {c: sum(1 for r in rs if r["categories"][c] == 1) for c in CATS}
        neg = {c: sum(1 for r in rs if r["categories"][c] == 0) for c in CATS}
        by = collections.Counter(r["source"].split(";")[0].split("@")[0] for r in rs)
        summary[split] = {"rows": len(rs), "positives": pos, "negatives": neg,
                          "any_positive": sum(1 for r in rs if any(v == 1 for v in r["categories"].values())),
                          "all_zero": sum(1 for r in rs if all(v == 0 for v in r["categories"].values())),
                          "weak_self_harm": sum(1 for r in rs if r.get("weak")),
                          "by_source": dict(by)}
    with open(os.path.join(ARGS.out, "stats.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
