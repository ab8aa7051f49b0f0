"""The reward model on a frozen base: every answer is read once, and only the score head is fit.

``backbone: "frozen"`` (the default). The base model runs forward only, packed as in fine-tuning
(``reward_data.pack``: the prompt once, each answer on it), and gives each answer the states its head
reads (``reward_scoring.packed_states``: by default the mean over the answer's tokens of ``head_layers``
= 4 hidden states, ``tapped_layers``: for SmolLM2-135M layers 12, 18, 24 and the final 30, one row of the
head each). The head is then the Bradley-Terry logistic regression on the differences of those states
(concatenated), better minus worse, for every pair of different rank, each ranking weighing the same as
in the grouped loss:

    minimise  mean_pairs softplus(-(x_better - x_worse) . w) + l2 * |w|^2

over standardised features (each dimension divided by the spread of the training differences), solved
by L-BFGS to convergence: no learning rate, no epochs. ``l2`` is chosen from ``L2_GRID`` by K-fold
cross-validation over the training prompts (``head_folds``; ``head_l2`` > 0 fixes it). The saved model is
an ordinary ``AutoModelForSequenceClassification`` with that head, read the way every scorer reads it.

Why: on Anthropic HH harmless-base with SmolLM2-135M the final state alone held out 0.66-0.67 of pairs
where fine-tuning the top 8 layers (the earlier default) held out 0.64-0.645, and it costs one forward
pass per pair instead of a forward and a backward per pair per epoch; the 4 states held out 0.686
against the final state's 0.664 on the same 8 prompt splits (docs/operations.md, "Reward models").
Intermediate layers carry what the last one, trained to predict the next token, has partly discarded.

The feature pass is the run's long part: it reports progress per micro-batch, with an ETA at its own
pace, and checkpoints the states read so far (``checkpoint_every`` micro-batches; each checkpoint
replaces the one before, as it holds everything read), so a run whose worker died resumes where it
stopped. Under ``torchrun`` each rank reads every ``world_size``-th
micro-batch and the states are summed across ranks; every rank fits the same head.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from training.checkpoint_io import torch_save
from training.distributed import all_reduce_tensor, world
from training.reward_data import micro_batches, ordered_pairs, pack
from training.reward_scoring import layers_of, packed_states, pooling_of

L2_GRID = (0.1, 0.3, 1.0, 3.0)  # standardised units; on HH harmless-base 1 state chose 0.3, 4 states 1-3 (operations.md)
STATES_FILE = "answer_states.pt"
TAPPED_SPAN = 0.6  # the states read are spread evenly over the top 60% of the depth


def tapped_layers(depth: int, count: int) -> list[int]:
    """The ``count`` hidden states the head reads, as indices into ``hidden_states`` (``depth`` is the final,
    normed one): evenly spaced over the top ``TAPPED_SPAN`` of the depth, the final always included;
    for depth 30 and count 4, [12, 18, 24, 30]. A shallow model gives fewer distinct states."""
    if count == 1:
        return [depth]
    return sorted({max(1, round(depth * (1 - TAPPED_SPAN * i / (count - 1)))) for i in range(count)})


def _groups(encoded: list, max_rankings: int, max_tokens: int) -> list[list[int]]:
    """``micro_batches`` as index lists: a fixed order, so a resumed run reads the same batches."""
    index = {id(r): i for i, r in enumerate(encoded)}
    return [[index[id(r)] for r in group] for group in micro_batches(encoded, max_rankings, max_tokens)]


def offsets_of(encoded: list) -> list[int]:
    """Where each ranking's answers start in the rows of its states."""
    starts, total = [], 0
    for ranking in encoded:
        starts.append(total)
        total += len(ranking.answers)
    return starts


class StatePass:
    """Reads the answer states of the training and held-out rankings, micro-batch by micro-batch."""

    def __init__(self, model, encoded: dict[str, list], pad_id: int, config, device):
        self.model, self.encoded, self.pad_id, self.device = model, encoded, pad_id, device
        self.width = model.config.hidden_size * model.config.num_labels  # one head row per state read: concatenated
        self.jobs = [(name, group) for name, rankings in encoded.items()
                     for group in _groups(rankings, config.eval_batch_size, 2 * config.micro_batch_tokens)]
        self.offsets = {name: offsets_of(rankings) for name, rankings in encoded.items()}
        self.states = {name: torch.zeros(sum(len(r.answers) for r in rankings), self.width)
                       for name, rankings in encoded.items()}
        self.done = 0

    def resume(self, folder: Path) -> None:
        """Continue after the micro-batches a checkpoint holds (its states are every rank's, gathered):
        under torchrun rank 0 keeps them and the others start from zeros, so the final sum counts each once."""
        saved = torch.load(folder / STATES_FILE, weights_only=True)
        self.states, self.done = saved["states"], int(saved["done"])
        if world()[0] != 0:
            self.states = {name: torch.zeros_like(states) for name, states in self.states.items()}

    def save(self, folder: Path, states: dict[str, torch.Tensor]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        torch_save({"states": states, "done": self.done}, folder / STATES_FILE)

    @torch.no_grad()
    def step(self) -> int:
        """Read the next micro-batch (under torchrun: this rank's share of it); returns the tokens read."""
        name, group = self.jobs[self.done]
        rank, size = world()
        tokens = 0
        if self.done % size == rank:
            rankings = [self.encoded[name][i] for i in group]
            states = packed_states(self.model, pack(rankings, self.pad_id), self.device).flatten(1).float().cpu()
            row = 0
            for i, ranking in zip(group, rankings, strict=True):
                start, k = self.offsets[name][i], len(ranking.answers)
                self.states[name][start:start + k] = states[row:row + k]
                row += k
            tokens = sum(r.length for r in rankings)
        self.done += 1
        return tokens

    def gathered(self) -> dict[str, torch.Tensor]:
        """Every state, with the other ranks' shares summed in (each row was written by one rank)."""
        return {name: all_reduce_tensor(states) for name, states in self.states.items()}


def pair_index(encoded: list, offsets: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(better rows, worse rows, weights, ranking of each pair): every pair of different rank; each ranking
    weighs 1 in all, split over its pairs (as ``grouped_ranking_loss`` averages within a ranking)."""
    better, worse, weight, owner = [], [], [], []
    for i, (ranking, start) in enumerate(zip(encoded, offsets, strict=True)):
        pairs = ordered_pairs(ranking.ranks)
        for b, w in pairs:
            better.append(start + b)
            worse.append(start + w)
            weight.append(1.0 / len(pairs))
            owner.append(i)
    return (torch.tensor(better, dtype=torch.long), torch.tensor(worse, dtype=torch.long),
            torch.tensor(weight, dtype=torch.float32), torch.tensor(owner, dtype=torch.long))


def fit_logistic(diffs: torch.Tensor, weights: torch.Tensor, l2: float) -> torch.Tensor:
    """argmin_w  sum_i weights_i softplus(-diffs_i . w) / sum(weights) + l2 |w|^2, by L-BFGS."""
    w = torch.zeros(diffs.shape[1], dtype=diffs.dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS([w], lr=1, max_iter=500, tolerance_grad=1e-6, tolerance_change=1e-9,
                                  history_size=20, line_search_fn="strong_wolfe")
    total = weights.sum()

    def closure():
        optimizer.zero_grad()
        loss = (weights * F.softplus(-(diffs @ w))).sum() / total + l2 * (w * w).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach()


def pairwise_correct(scores: torch.Tensor, better: torch.Tensor, worse: torch.Tensor) -> float | None:
    """Share of pairs whose better answer scores strictly higher (a tie is wrong), as ``pairwise_accuracy``."""
    return float((scores[better] > scores[worse]).float().mean()) if len(better) else None


def choose_l2(diffs: torch.Tensor, weights: torch.Tensor, owner: torch.Tensor, groups: list[str],
              folds: int, seed: int) -> tuple[float, dict[str, float]]:
    """The ``L2_GRID`` value with the best K-fold pairwise accuracy, folds by prompt: (l2, accuracy by l2)."""
    names = sorted(set(groups))
    random.Random(seed).shuffle(names)
    fold_of_group = {name: i % folds for i, name in enumerate(names)}
    fold = torch.tensor([fold_of_group[groups[i]] for i in owner.tolist()])
    scores: dict[str, float] = {}
    for l2 in L2_GRID:
        correct = total = 0.0
        for k in range(folds):
            held = fold == k
            if not bool(held.any()) or bool(held.all()):
                continue
            w = fit_logistic(diffs[~held], weights[~held], l2)
            right = ((diffs[held] @ w) > 0).float()
            correct, total = correct + float(right.sum()), total + float(held.sum())
        scores[str(l2)] = correct / total if total else 0.0
    best = max(L2_GRID, key=lambda l2: (scores[str(l2)], l2))  # ties: the stronger penalty
    return best, scores


def fit_head(states: torch.Tensor, encoded: list, groups: list[str], config) -> tuple[torch.Tensor, dict]:
    """The head's weight [states read x hidden] in the states' own units, and what the fit chose."""
    better, worse, weights, owner = pair_index(encoded, offsets_of(encoded))
    diffs = (states[better] - states[worse]).double()
    scale = diffs.std(0, unbiased=False).clamp(min=1e-6) if len(diffs) > 1 else torch.ones(diffs.shape[1],
                                                                                              dtype=diffs.dtype)
    diffs = diffs / scale
    folds = min(config.head_folds, len(set(groups)))
    if config.head_l2 > 0 or folds < 2:
        l2, cv = (config.head_l2 or L2_GRID[1]), {}
    else:
        l2, cv = choose_l2(diffs, weights.double(), owner, groups, folds, config.seed)
    w = fit_logistic(diffs, weights.double(), l2)
    train_accuracy = float(((diffs @ w) > 0).double().mean()) if len(diffs) else None
    return (w / scale).float(), {"head_l2": l2, "head_cv_accuracy": cv, "train_accuracy": train_accuracy,
                                 "pairs_fit": len(diffs)}


def train_frozen(model, tokenizer, train_set: list, train_enc: list, eval_enc: list, config, reporter, *,
                 device, out_dir: Path, resume_from: Path | None, checkpoint_dir: Path | None, save_final) -> dict:
    """Read every answer's state with the frozen base, fit the head, save the model (module docstring)."""
    model.requires_grad_(False)
    model.eval()
    rank, size = world()
    pad_id = tokenizer.pad_token_id
    reading = StatePass(model, {"train": train_enc, "eval": eval_enc}, pad_id, config, device)
    if resume_from is not None and (Path(resume_from) / STATES_FILE).exists():
        reading.resume(Path(resume_from))
    start, total = reading.done, len(reading.jobs) + 1  # the last step is the fit
    read_seconds, cpu_seconds, tokens = 0.0, 0.0, 0
    previous = Path(resume_from) if resume_from is not None and checkpoint_dir is not None and \
        Path(resume_from).parent == Path(checkpoint_dir) else None
    reporter.phase(f"reading {len(train_enc)} training and {len(eval_enc)} held-out rankings with the frozen model")
    while reading.done < len(reading.jobs):
        tick, cpu_tick = time.perf_counter(), time.process_time()
        tokens += reading.step()
        read_seconds += time.perf_counter() - tick
        cpu_seconds += time.process_time() - cpu_tick
        done = reading.done
        if rank == 0:
            reporter.progress(done, total, {
                "rankings_read": sum(len(g) for _, g in reading.jobs[:done]),
                "eta_seconds": round(read_seconds / (done - start) * (total - 1 - done), 3)})
        if checkpoint_dir is not None and config.checkpoint_every and done % config.checkpoint_every == 0:
            gathered = reading.gathered()  # every rank takes part; rank 0 writes everyone's states
            if rank == 0:
                path = Path(checkpoint_dir) / f"step-{done}"
                reading.save(path, gathered)
                (path / "trainer_state.json").write_text(json.dumps({"step": done, "backbone": "frozen"}))
                reporter.checkpoint(path, done)
                if previous is not None and previous != path:  # each checkpoint holds all states read so far
                    shutil.rmtree(previous, ignore_errors=True)
                previous = path
    states = reading.gathered()

    tick, cpu_tick = time.perf_counter(), time.process_time()
    head = model.score.weight  # [states read, hidden]: row-major, as the states were flattened
    initial = _accuracy(states["eval"], eval_enc, head.detach().flatten().float())
    weight, chosen = fit_head(states["train"], train_enc, [r.group for r in train_set], config)
    with torch.no_grad():
        head.copy_(weight.to(head.dtype).view_as(head))
    accuracy = _accuracy(states["eval"], eval_enc, weight)
    fit_seconds = time.perf_counter() - tick
    cpu_seconds += time.process_time() - cpu_tick
    if rank == 0:
        reporter.progress(total, total, {"eval_accuracy": accuracy, "train_accuracy": chosen["train_accuracy"],
                                         "head_l2": chosen["head_l2"], "eta_seconds": 0.0})
        save_final(out_dir, model, tokenizer, config)
    pairs = sum(len(ordered_pairs(r.ranks)) for r in (*train_enc, *eval_enc))
    return {
        "eval_accuracy": accuracy, "eval_accuracy_initial": initial if config.eval_initial else None,
        "accuracy_by_epoch": [accuracy] if accuracy is not None else [],
        "train_loss": None, "steps": total, "resumed_from_step": start, "world_size": size,
        "device": str(device), "pooling": pooling_of(model), "backbone": "frozen", "layers_read": layers_of(model),
        "train_seconds": read_seconds + fit_seconds, "read_seconds": read_seconds, "fit_seconds": fit_seconds,
        "train_cpu_seconds": cpu_seconds,  # this process's CPU time reading and fitting
        "eval_seconds": 0.0,  # the held-out answers are read in the same pass (read_seconds)
        "pairs_per_second": pairs / read_seconds if read_seconds and start == 0 else 0.0,  # training and held-out
        "tokens_per_second": tokens / read_seconds if read_seconds else 0.0,
        **chosen,
    }


def _accuracy(states: torch.Tensor, encoded: list, weight: torch.Tensor) -> float | None:
    if not encoded:
        return None
    better, worse, _, _ = pair_index(encoded, offsets_of(encoded))
    return pairwise_correct(states.double() @ weight.double(), better, worse)

