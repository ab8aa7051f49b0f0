"""Rankings for the reward model: reading, the by-prompt split, encoding with truncation, packing.

A ranking is one prompt with its K completions and their ranks (0 best, equal ranks are ties), as
``exports.ranking_row`` writes it. The reward model scores ``chat_template(prompt + assistant
answer)`` (``encode_for_scoring`` gives those ids for one answer); each completion is tokenized once,
the prompt once per ranking. A (prompt, answer) longer than ``max_length`` is cut, never dropped: the
prompt loses tokens from its left end (the conversation's oldest turns), and only when an answer alone
does not fit is it cut too, keeping its last token (the end-of-turn marker, where the score is read).
The K answers of a ranking share one prompt cut (the one the longest answer needs), so each of them
is scored on the same context.

Packing (``pack``): a ranking is one row, ``prompt + answer_1 + ... + answer_K``, with a 4-D attention
mask in which the prompt attends causally to itself and each answer to the prompt and causally to
itself, never to another answer, and position ids that restart at the prompt's end for every answer.
Each answer's score is then exactly its score alone (``prompt + answer``), while the prompt is encoded
once per ranking instead of K times: a pair with a long multi-turn prompt costs little more than one
sequence. Rows are right-padded; ``micro_batches`` sorts rankings by packed length so little padding
is computed.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from annotation.evidence import messages_with_evidence


@dataclass
class Ranking:
    prompt: list[dict]
    completions: list[str]
    ranks: list[int]
    group: str  # the split key: all rankings of one prompt share it


@dataclass
class EncodedRanking:
    prefix: list[int]  # the prompt's tokens, shared by every answer (left-truncated)
    answers: list[list[int]]  # one token list per completion
    ranks: list[int]
    truncated: int = 0  # how many of the (prompt, answer) sequences were cut to max_length

    @property
    def sequences(self) -> list[list[int]]:
        """Each answer with its prompt, as it is scored alone."""
        return [self.prefix + answer for answer in self.answers]

    @property
    def length(self) -> int:
        """Tokens of the packed row: the prompt once plus every answer."""
        return len(self.prefix) + sum(len(a) for a in self.answers)


@dataclass
class EncodeStats:
    sequences: int = 0
    truncated: int = 0
    answer_truncated: int = 0
    longest: int = 0


def prompt_key(row: dict) -> str:
    """The prompt's messages, not its id: two prompt rows with the same text must not straddle the split."""
    return json.dumps(row["prompt"], sort_keys=True, ensure_ascii=False)


def read_rankings(path: Path) -> list[Ranking]:
    """Rankings of a JSONL file; a row without two completions and matching ranks is an error naming its line."""
    rankings = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            completions, ranks = row.get("completions"), row.get("ranks")
            if not isinstance(row.get("prompt"), list) or not isinstance(completions, list) or not isinstance(ranks, list):
                raise ValueError(f"line {number} of {path}: a ranking needs 'prompt' (messages), 'completions', 'ranks'")
            if len(completions) != len(ranks) or len(completions) < 2:
                raise ValueError(f"line {number} of {path}: {len(completions)} completions and {len(ranks)} ranks")
            # A row's passages are in its prompt already (exports); a file with only an ``evidence``
            # column gets them added the same way, so the model always scores answer and evidence together.
            prompt = messages_with_evidence(row["prompt"], row.get("evidence"))
            rankings.append(Ranking(prompt, [str(c) for c in completions], [int(r) for r in ranks],
                                    prompt_key({"prompt": prompt})))
    return rankings


def split_by_prompt(rankings: list[Ranking], eval_fraction: float, seed: int) -> tuple[list[Ranking], list[Ranking]]:
    """Held-out rankings chosen by prompt (seeded), so no prompt is on both sides of the split.

    With a single prompt there is nothing to hold out and everything trains."""
    groups = sorted({r.group for r in rankings})
    random.Random(seed).shuffle(groups)
    n_eval = 0
    if len(groups) > 1 and eval_fraction > 0:
        n_eval = min(len(groups) - 1, max(1, round(len(groups) * eval_fraction)))
    held_out = set(groups[:n_eval])
    return [r for r in rankings if r.group not in held_out], [r for r in rankings if r.group in held_out]


def ordered_pairs(ranks: list[int]) -> list[tuple[int, int]]:
    """(better, worse) index pairs of one ranking, ties skipped."""
    pairs = []
    for i in range(len(ranks)):
        for j in range(i + 1, len(ranks)):
            if ranks[i] != ranks[j]:
                pairs.append((i, j) if ranks[i] < ranks[j] else (j, i))
    return pairs


def count_pairs(rankings) -> int:
    return sum(len(ordered_pairs(r.ranks)) for r in rankings)


def ensure_chat_template(tokenizer) -> None:
    """A base tokenizer without a chat template gets the ChatML one (SmolLM2's), so scoring stays defined."""
    if not getattr(tokenizer, "chat_template", None):
        from training.tiny import CHATML_TEMPLATE

        tokenizer.chat_template = CHATML_TEMPLATE


def ensure_pad_token(tokenizer) -> int:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer.pad_token_id


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_prompt(tokenizer, prompt: list[dict]) -> tuple[str, list[int]]:
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return text, _ids(tokenizer, text)


def encode_answer(tokenizer, prompt: list[dict], prompt_text: str, answer: str) -> list[int] | None:
    """The answer's tokens as the template writes them after the prompt; None when the template does not
    render the prompt as a prefix (then the whole conversation is tokenized at once)."""
    full = tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": answer}], tokenize=False)
    if not full.startswith(prompt_text):
        return None
    return _ids(tokenizer, full[len(prompt_text):])


def fit_shared(prompt_ids: list[int], answers: list[list[int]], max_length: int
               ) -> tuple[list[int], list[list[int]], list[bool]]:
    """Cut one prompt and its answers so that prompt + any answer fits ``max_length``:
    (prompt ids, answers, answer_cut per answer).

    An answer keeps at least 3/4 of the budget when the prompt is long (cut, it keeps its last token);
    the prompt is cut from the left, as far as the longest answer needs."""
    answer_budget = max_length - min(len(prompt_ids), max_length // 4)
    cut = [len(a) > answer_budget for a in answers]
    answers = [a[: answer_budget - 1] + a[-1:] if c else a for a, c in zip(answers, cut, strict=True)]
    prompt_budget = max_length - max(len(a) for a in answers)
    if len(prompt_ids) > prompt_budget:
        prompt_ids = prompt_ids[len(prompt_ids) - prompt_budget:] if prompt_budget > 0 else []
    return prompt_ids, answers, cut


def fit(prompt_ids: list[int], answer_ids: list[int], max_length: int) -> tuple[list[int], bool, bool]:
    """Join prompt and answer within ``max_length``: (ids, truncated, answer_truncated)."""
    prefix, (answer,), (answer_cut,) = fit_shared(prompt_ids, [answer_ids], max_length)
    return prefix + answer, len(prefix) + len(answer) < len(prompt_ids) + len(answer_ids), answer_cut


def encode_ranking(tokenizer, prompt: list[dict], answers: list[str], max_length: int,
                   stats: EncodeStats | None = None, ranks: list[int] | None = None) -> EncodedRanking:
    """The shared prompt ids and each answer's ids, cut to ``max_length`` (see ``fit_shared``)."""
    prompt_text, prompt_ids = encode_prompt(tokenizer, prompt)
    answer_ids = [encode_answer(tokenizer, prompt, prompt_text, answer) for answer in answers]
    if any(ids is None for ids in answer_ids):  # unusual template: each whole conversation, left-truncated
        full = [_ids(tokenizer, tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": a}],
                                                              tokenize=False)) for a in answers]
        prefix, kept, cut, answer_cut = [], [ids[-max_length:] for ids in full], \
            [len(ids) > max_length for ids in full], [False] * len(full)
    else:
        prefix, kept, answer_cut = fit_shared(prompt_ids, answer_ids, max_length)
        cut = [len(prefix) < len(prompt_ids) or c for c in answer_cut]
    if stats is not None:
        stats.sequences += len(kept)
        stats.truncated += sum(cut)
        stats.answer_truncated += sum(answer_cut)
        stats.longest = max(stats.longest, *(len(prefix) + len(a) for a in kept))
    return EncodedRanking(prefix, kept, list(ranks or [0] * len(kept)), sum(cut))


def encode_pair_texts(tokenizer, prompt: list[dict], answers: list[str], max_length: int,
                      stats: EncodeStats | None = None) -> list[list[int]]:
    """Token ids of ``chat_template(prompt + answer)`` for each answer, the prompt tokenized once."""
    return encode_ranking(tokenizer, prompt, answers, max_length, stats).sequences


def encode_for_scoring(tokenizer, prompt: list[dict], answer: str, max_length: int) -> list[int]:
    """The token ids a reward model scores for one (prompt messages, assistant answer): the chat template
    of the conversation, the prompt cut from the left to fit ``max_length`` exactly as in training.
    Use the reward model's own ``max_length`` (``reward_max_length(folder)``) and its tokenizer after
    ``ensure_chat_template``; the score is read at the last token."""
    return encode_ranking(tokenizer, prompt, [answer], max_length).sequences[0]


SETTINGS_FILE = "reward_settings.json"


def reward_max_length(folder: Path, default: int = 512) -> int:
    """The ``max_length`` a saved reward model was trained with (``default`` for older models)."""
    try:
        return int(json.loads((Path(folder) / SETTINGS_FILE).read_text())["max_length"])
    except (FileNotFoundError, KeyError, ValueError, TypeError):
        return default


def encode_rankings(tokenizer, rankings: list[Ranking], max_length: int) -> tuple[list[EncodedRanking], EncodeStats]:
    stats = EncodeStats()
    encoded = [encode_ranking(tokenizer, r.prompt, r.completions, max_length, stats, r.ranks) for r in rankings]
    return encoded, stats


@dataclass
class Packed:
    """Rankings packed one per row: ``input_ids`` and ``position_ids`` [rows, width], ``attention_mask``
    [rows, 1, width, width] (additive, 0 where attending), ``last`` the (row, column) of each answer's
    last token in ranking then answer order, ``answer_of`` [rows, width] the index (in that order) of the
    answer each position belongs to, -1 for prompt and padding, ``tokens`` the real (unpadded) tokens."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    attention_mask: torch.Tensor
    last: tuple[torch.Tensor, torch.Tensor]
    answer_of: torch.Tensor
    tokens: int


def pack(rankings: list[EncodedRanking], pad_id: int, dtype: torch.dtype = torch.float32) -> Packed:
    """One row per ranking: prompt then each answer, answers blind to each other (module docstring)."""
    width = max(r.length for r in rankings)
    input_ids = torch.full((len(rankings), width), pad_id, dtype=torch.long)
    position_ids = torch.zeros((len(rankings), width), dtype=torch.long)
    branch = torch.full((len(rankings), width), -1, dtype=torch.long)  # -1 pad, 0 prompt, k+1 answer k
    answer_of = torch.full((len(rankings), width), -1, dtype=torch.long)
    rows, columns = [], []
    for row, ranking in enumerate(rankings):
        p = len(ranking.prefix)
        input_ids[row, :p] = torch.tensor(ranking.prefix, dtype=torch.long)
        position_ids[row, :p] = torch.arange(p)
        branch[row, :p] = 0
        start = p
        for k, answer in enumerate(ranking.answers):
            end = start + len(answer)
            input_ids[row, start:end] = torch.tensor(answer, dtype=torch.long)
            position_ids[row, start:end] = torch.arange(p, p + len(answer))
            branch[row, start:end] = k + 1
            answer_of[row, start:end] = len(rows)
            rows.append(row)
            columns.append(end - 1)
            start = end
    query, key = branch[:, :, None], branch[:, None, :]
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    allowed = causal & (key >= 0) & ((key == 0) | (key == query))
    allowed |= torch.eye(width, dtype=torch.bool)  # a pad position attends to itself: no empty softmax row
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
    return Packed(input_ids, position_ids, mask[:, None], (torch.tensor(rows), torch.tensor(columns)),
                  answer_of, sum(r.length for r in rankings))


def micro_batches(rankings: list, max_rankings: int, max_tokens: int) -> list[list]:
    """Consecutive groups of rankings sorted by packed length, each at most ``max_rankings`` rows and
    ``max_tokens`` padded tokens (a ranking longer than that is a group alone): little padding."""
    groups: list[list] = []
    for ranking in sorted(rankings, key=lambda r: r.length):
        group = groups[-1] if groups else None
        if group is None or len(group) >= max_rankings or (len(group) + 1) * ranking.length > max_tokens:
            groups.append([ranking])
        else:
            group.append(ranking)
    return groups


def collate(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask`` for a list of token lists."""
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return input_ids, mask


BUCKET_BATCHES = 64  # batches sorted by length together: similar lengths in a batch, still a shuffled order


def epoch_batches(epoch: int, n: int, batch_size: int, seed: int, lengths: list[int] | None = None) -> list[list[int]]:
    """The batches (ranking indices) of one epoch: a seeded permutation, so a resumed run replays the same
    data. With ``lengths``, each span of ``BUCKET_BATCHES`` batches of the permutation is sorted by length
    before it is cut into batches, and the batches are shuffled: a batch pads to little more than its
    longest ranking, while any ranking can still meet any other span's in a later epoch."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()
    if lengths is None:
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    span = batch_size * BUCKET_BATCHES
    batches = []
    for start in range(0, n, span):
        chunk = sorted(order[start:start + span], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    random.Random(seed * 1_000_003 + epoch).shuffle(batches)
    return batches
