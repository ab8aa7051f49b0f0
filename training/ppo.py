"""PPO against a reward model with a KL penalty to a frozen reference (InstructGPT's RL stage).

TRL 1.16 no longer ships a ``PPOTrainer``, so this is our own loop, written to be read in one go:

    for each iteration:
        sample ``batch_size`` prompts (seeded), generate an answer to each   (ppo_rollout.collect_rollout)
        log-probs of policy and reference, values, reward-model scores
        per-token rewards -beta * (logp - logp_ref), the normalised RM score (minus a penalty when the
            answer was cut without a stop token) on the last token; GAE; whitened advantages
        ``ppo_epochs`` passes over shuffled minibatches: clipped policy loss + vf_coef * clipped value
            loss (+ ptx_coef * SFT negative log-likelihood on assistant tokens, PPO-ptx); the policy's
            and the value head's gradients are clipped to ``max_grad_norm`` separately
        adapt beta (Ziegler et al.) or keep it fixed; report; checkpoint

**Reward scale and the critic.** The first rollout (the SFT policy's answers) fixes an offset and a
scale for the reward model's scores (``ScoreNormalizer``), and the value head, which starts at zero,
is fitted to that rollout's returns (``value_warmup_steps``) before the first policy step, so
advantages measure the reward model's preference rather than its arbitrary mean. Updates run with
dropout off (eval mode), as the rollout's log-probs were measured, so the first ratio is exactly 1.

**Value function: a linear head on the policy's last hidden state, detached by default.** InstructGPT
trains a separate value model initialised from the reward model; on a 2-core CPU that is a second
135M-parameter network to run forward and backward every minibatch and to keep in memory next to the
policy, reference and reward model (its head reads the policy's features, so copying the reward
model's head would not carry its meaning over: it is warmed up instead). The head reuses the hidden states the policy forward computes
anyway, so values cost one ``nn.Linear``. Detached (``value_trunk_grad=False``), value-loss gradients
never reach the policy: the KL/reward trade-off is set by the policy loss alone, and a value head that
starts from zero cannot disturb the SFT model early on. Its weakness, a critic limited to a linear
read-out of policy features, costs variance rather than bias: advantages are whitened and GAE with
lambda < 1 still subtracts the learned baseline. ``value_trunk_grad=True`` shares the trunk instead.

Every iteration is seeded from (seed, iteration), so a run resumed from a checkpoint (policy, value
head, optimizer, KL controller, history) repeats exactly what the uninterrupted run would have done.
A NaN or infinity in a score, log-prob, value, loss, gradient norm or logged metric raises
``TrainingDiverged`` naming the iteration and the quantity. The policy is saved without its value
head, as a plain causal-LM folder. One process (no ``torchrun`` sharding), on the GPU when there is
one (``training.distributed.device``), with bf16 autocast where the GPU supports it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from training import ppo_loss as L
from training.checkpoint_io import torch_save
from training.distributed import autocast, device
from training.ppo_rollout import Rollout, collect_rollout, pad_id, policy_outputs, read_prompts
from training.reporting import NullReporter, Reporter, TrainingDiverged

VALUE_HEAD_FILE = "value_head.safetensors"


@dataclass
class PPOConfig:
    iterations: int = 12
    batch_size: int = 8  # prompts (= answers) per iteration
    mini_batch_size: int = 4  # answers per optimizer step
    ppo_epochs: int = 2  # passes over each batch
    learning_rate: float = 3e-6  # policy
    value_learning_rate: float = 1e-3  # value head
    value_trunk_grad: bool = False  # let value-loss gradients reach the policy's layers
    max_grad_norm: float = 1.0  # for the policy and for the value head, each on its own
    value_warmup_steps: int = 100  # value-head steps on the first rollout before the first policy step
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 48
    max_prompt_length: int = 256  # prompt tokens kept (the end)
    reward_max_length: int = 0  # tokens the reward model reads; 0 = the length it was trained with
    score_normalization: str = "initial"  # initial (fixed by the SFT policy's answers) | batch | none
    missing_eos_penalty: float = 1.0  # subtracted from the (normalised) score of an answer cut without a stop
    init_kl_coef: float = 0.05  # beta
    adaptive_kl: bool = True
    kl_target: float = 6.0  # nats per answer
    # answers; beta moves by up to 20% * batch_size / kl_horizon an iteration (5% at the defaults).
    # Ziegler et al.'s 10,000 assumed batches of 512: at batch 8 it would leave beta fixed in practice.
    kl_horizon: float = 32.0
    gamma: float = 1.0
    lam: float = 0.95
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    ptx_coef: float = 0.0  # gamma of PPO-ptx; > 0 needs SFT data
    ptx_batch_size: int = 4  # SFT transcripts per optimizer step
    ptx_max_length: int = 512
    checkpoint_every: int = 4  # iterations
    seed: int = 0

    @classmethod
    def from_dict(cls, values: dict) -> PPOConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown PPO setting(s): {', '.join(unknown)}")
        return cls(**values)

    def __post_init__(self) -> None:
        if min(self.iterations, self.batch_size, self.mini_batch_size, self.ppo_epochs, self.max_new_tokens) < 1:
            raise ValueError("iterations, batch_size, mini_batch_size, ppo_epochs and max_new_tokens must be >= 1")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError("PPO samples: temperature must be > 0 and top_p in (0, 1]")
        if self.score_normalization not in ("initial", "batch", "none"):
            raise ValueError(f"score_normalization must be initial, batch or none, not {self.score_normalization!r}")
        if self.missing_eos_penalty < 0 or self.value_warmup_steps < 0 or self.reward_max_length < 0:
            raise ValueError("missing_eos_penalty, value_warmup_steps and reward_max_length must be >= 0")
        if self.init_kl_coef < 0 or self.ptx_coef < 0 or self.checkpoint_every < 1:
            raise ValueError("init_kl_coef and ptx_coef must be >= 0 and checkpoint_every >= 1")


def prompt_indices(iteration: int, n: int, batch_size: int, seed: int) -> list[int]:
    """The prompts of ``iteration``: a seeded permutation per pass over the prompts (cycled if there are few)."""
    per_epoch = max(1, n // batch_size)
    epoch, offset = divmod(iteration, per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()
    return [order[(offset * batch_size + i) % n] for i in range(batch_size)]


def _finite(value, what: str, iteration: int) -> None:
    ok = math.isfinite(value) if isinstance(value, float) else bool(torch.isfinite(value).all())
    if not ok:
        shown = value if isinstance(value, float) else value[~torch.isfinite(value)].flatten()[0].item()
        raise TrainingDiverged(f"PPO {what} became {shown} at iteration {iteration}")


class PtxData:
    """SFT transcripts for the PPO-ptx term: assistant tokens only, a seeded order per pass."""

    def __init__(self, path: Path, tokenizer, config: PPOConfig) -> None:
        from training.chat_data import read_conversations, tokenize_all

        self.examples, _ = tokenize_all(tokenizer, read_conversations(path), config.ptx_max_length)
        if not self.examples:
            raise ValueError(f"{path} holds no SFT transcript with assistant tokens for the PPO-ptx term")
        self.pad, self.size, self.seed = pad_id(tokenizer), config.ptx_batch_size, config.seed

    def loss(self, policy, update: int) -> torch.Tensor:
        """Mean negative log-likelihood of the assistant tokens of the ``update``-th SFT batch."""
        from training.chat_data import collate, summed_token_loss
        from training.sft import batch_indices

        batch = [self.examples[i] for i in batch_indices(update, len(self.examples), self.size, self.seed)]
        total, count = summed_token_loss(policy, collate(batch, self.pad))
        return total / max(1, count)


def _load(policy_dir, reward_dir, ref_dir, resume_from):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.reward import load_reward_model

    where = device()

    def frozen(model):
        model.eval()
        model.requires_grad_(False)
        return model.to(where)

    source = Path(resume_from) if resume_from is not None else Path(policy_dir)
    tokenizer = AutoTokenizer.from_pretrained(source)
    policy = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).to(where)
    ref = frozen(AutoModelForCausalLM.from_pretrained(Path(ref_dir or policy_dir), dtype=torch.float32))
    rm, rm_tokenizer = load_reward_model(Path(reward_dir))  # its own pad token and chat template, as trained
    rm = frozen(rm)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    value_head = nn.Linear(policy.get_output_embeddings().in_features, 1)
    nn.init.zeros_(value_head.weight)
    nn.init.zeros_(value_head.bias)
    if resume_from is not None:
        from safetensors.torch import load_file

        value_head.load_state_dict(load_file(Path(resume_from) / VALUE_HEAD_FILE))
    return tokenizer, policy, value_head.to(where), ref, rm, rm_tokenizer


def _save_checkpoint(path: Path, policy, value_head, tokenizer, optimizer, kl_ctl, normalizer, iteration: int,
                     config: PPOConfig, history: list) -> None:
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    save_file({k: v.contiguous() for k, v in value_head.state_dict().items()}, str(path / VALUE_HEAD_FILE))
    torch_save(optimizer.state_dict(), path / "optimizer.pt")
    state = {"step": iteration, "config": asdict(config), "history": history, "kl_controller": kl_ctl.state_dict(),
             "score_normalizer": normalizer.state_dict()}
    (path / "trainer_state.json").write_text(json.dumps(state))


def ppo_update(policy, value_head, optimizer, rollout: Rollout, advantages, returns, config: PPOConfig,
               iteration: int, update: int, ptx: PtxData | None) -> dict:
    """``ppo_epochs`` passes of minibatch steps over one rollout; returns the mean losses and clip fraction.

    The policy stays in eval mode (dropout off, as when the rollout's log-probs were measured; gradients
    flow all the same), and its gradients and the value head's are clipped each to its own norm: a
    large early value gradient must not shrink the policy's step."""
    policy.eval()
    n = rollout.input_ids.shape[0]
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + iteration)
    sums = {"policy_loss": 0.0, "value_loss": 0.0, "clip_fraction": 0.0, "approx_kl": 0.0, "ptx_loss": 0.0}
    steps = 0
    policy_params = [p for p in policy.parameters() if p.requires_grad]
    value_params = list(value_head.parameters())
    for _ in range(config.ppo_epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, config.mini_batch_size):
            idx = order[start : start + config.mini_batch_size]
            mask = rollout.response_mask[idx]
            with autocast():
                logprobs, values, _ = policy_outputs(
                    policy, value_head, rollout.input_ids[idx], rollout.attention_mask[idx], rollout.prompt_width,
                    config.temperature, detach_value=not config.value_trunk_grad,
                )
            pg_loss, clip_fraction = L.policy_loss(logprobs, rollout.logprobs[idx], advantages[idx], mask,
                                                   config.cliprange)
            vf_loss = L.value_loss(values, rollout.values[idx], returns[idx], mask, config.cliprange_value)
            loss = pg_loss + config.vf_coef * vf_loss
            _finite(pg_loss.detach(), "policy loss", iteration)
            _finite(vf_loss.detach(), "value loss", iteration)
            if ptx is not None and config.ptx_coef > 0:
                ptx_loss = ptx.loss(policy, update + steps)
                _finite(ptx_loss.detach(), "ptx loss", iteration)
                loss = loss + config.ptx_coef * ptx_loss
                sums["ptx_loss"] += ptx_loss.item()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(policy_params, config.max_grad_norm)
            _finite(grad_norm, "gradient norm", iteration)
            _finite(torch.nn.utils.clip_grad_norm_(value_params, config.max_grad_norm), "value gradient norm",
                    iteration)
            optimizer.step()
            sums["policy_loss"] += pg_loss.item()
            sums["value_loss"] += vf_loss.item()
            sums["clip_fraction"] += clip_fraction.item()
            sums["approx_kl"] += (0.5 * L.masked_mean((logprobs.detach() - rollout.logprobs[idx]) ** 2, mask)).item()
            steps += 1
    return {k: v / steps for k, v in sums.items()} | {"steps": steps}


def warm_up_value_head(value_head, rollout: Rollout, returns: torch.Tensor, steps: int,
                       lr: float) -> tuple[float, float]:
    """Fit the value head alone to one rollout's returns (full-batch Adam on the stored hidden states);
    returns the value loss (before, after). The rollout's values are replaced by the fitted head's."""
    optimizer = torch.optim.Adam(value_head.parameters(), lr=lr)
    mask = rollout.response_mask
    hidden = rollout.hidden.to(next(value_head.parameters()).dtype)
    def loss_now():
        return 0.5 * L.masked_mean((value_head(hidden).squeeze(-1).float() - returns) ** 2, mask)

    with torch.no_grad():
        before = float(loss_now())
    for _ in range(steps):
        with torch.enable_grad():
            loss = loss_now()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        optimizer.step()
    with torch.no_grad():
        rollout.values = value_head(hidden).squeeze(-1).float()
        return before, float(loss_now())


def train_ppo(
    policy_dir: Path,
    reward_dir: Path,
    prompts_path: Path,
    out_dir: Path,
    config: PPOConfig | dict,
    reporter: Reporter = NullReporter(),
    *,
    resume_from: Path | None = None,
    checkpoint_dir: Path | None = None,
    ref_dir: Path | None = None,
    sft_data_path: Path | None = None,
) -> dict:
    """Optimise the policy of ``policy_dir`` against the reward model of ``reward_dir`` on the prompts of
    ``prompts_path``; save the policy + tokenizer to ``out_dir`` and return the per-iteration metrics.

    ``config.reward_max_length`` 0 reads the reward model at the length it was trained with, as saved in
    its folder (``reward_data.reward_max_length``; the reward stage's default for an older model without
    that file). The runner passes the length recorded in the reward model version's config."""
    if isinstance(config, dict):
        config = PPOConfig.from_dict(config)
    if not config.reward_max_length:
        from dataclasses import replace

        from training.reward import RewardConfig
        from training.reward_data import reward_max_length

        config = replace(config, reward_max_length=reward_max_length(Path(reward_dir), RewardConfig().max_length))
    torch.manual_seed(config.seed)
    out_dir = Path(out_dir)
    prompts = read_prompts(Path(prompts_path))
    reporter.phase("loading models")
    tokenizer, policy, value_head, ref, rm, rm_tokenizer = _load(policy_dir, reward_dir, ref_dir, resume_from)
    ptx = PtxData(Path(sft_data_path), tokenizer, config) if sft_data_path and config.ptx_coef > 0 else None
    optimizer = torch.optim.AdamW(
        [{"params": list(policy.parameters()), "lr": config.learning_rate},
         {"params": list(value_head.parameters()), "lr": config.value_learning_rate}],
        weight_decay=0.0,
    )
    kl_ctl = (L.AdaptiveKLController(config.init_kl_coef, config.kl_target, config.kl_horizon)
              if config.adaptive_kl else L.FixedKLController(config.init_kl_coef))
    normalizer = L.ScoreNormalizer(config.score_normalization)
    start, history = 0, []
    if resume_from is not None:
        state = json.loads((Path(resume_from) / "trainer_state.json").read_text())
        start, history = state["step"], state["history"]
        kl_ctl.load_state_dict(state["kl_controller"])
        normalizer.load_state_dict(state.get("score_normalizer", {}))
        optimizer.load_state_dict(torch.load(Path(resume_from) / "optimizer.pt", weights_only=True))
    rollout_seconds = update_seconds = 0.0
    updates_per_iteration = config.ppo_epochs * math.ceil(config.batch_size / config.mini_batch_size)
    reporter.phase(f"generating and scoring the answers of iteration {start + 1} of {config.iterations}")

    for iteration in range(start, config.iterations):
        number = iteration + 1
        torch.manual_seed(config.seed * 1_000_003 + iteration)
        began = time.time()
        batch = [prompts[i] for i in prompt_indices(iteration, len(prompts), config.batch_size, config.seed)]
        rollout = collect_rollout(policy, value_head, ref, tokenizer, rm, rm_tokenizer, batch, config)
        for what, tensor in (("reward-model score", rollout.raw_scores), ("policy log-prob", rollout.logprobs),
                             ("reference log-prob", rollout.ref_logprobs), ("value", rollout.values)):
            _finite(tensor, what, number)
        beta = kl_ctl.value
        mask = rollout.response_mask
        rollout.scores = normalizer(rollout.raw_scores) - config.missing_eos_penalty * rollout.truncated.float()
        kl_tokens = (rollout.logprobs - rollout.ref_logprobs) * mask
        rewards = L.kl_penalized_rewards(rollout.logprobs, rollout.ref_logprobs, rollout.scores, mask, beta)
        advantages, returns = L.gae(rewards, rollout.values, mask, config.gamma, config.lam)
        warmup = None
        if iteration == 0 and config.value_warmup_steps:
            warmup = warm_up_value_head(value_head, rollout, returns, config.value_warmup_steps,
                                             config.value_learning_rate)
            advantages, returns = L.gae(rewards, rollout.values, mask, config.gamma, config.lam)
        advantages = L.whiten(advantages, mask)
        rollout_seconds += time.time() - began

        began = time.time()
        stats = ppo_update(policy, value_head, optimizer, rollout, advantages, returns, config, number,
                           iteration * updates_per_iteration, ptx)
        update_seconds += time.time() - began

        kl = kl_tokens.sum(dim=1).mean().item()  # nats per answer
        kl_ctl.update(kl, config.batch_size)
        point = {
            "iteration": number,
            "reward": rollout.raw_scores.mean().item(),
            "reward_std": rollout.raw_scores.std().item() if len(batch) > 1 else 0.0,
            "score": rollout.scores.mean().item(),  # normalised, with the missing-EOS penalty: what PPO optimises
            "truncated": rollout.truncated.float().mean().item(),
            "kl": kl,
            "entropy": rollout.entropy,
            "clip_fraction": stats["clip_fraction"],
            "value_loss": stats["value_loss"],
            "policy_loss": stats["policy_loss"],
            "approx_kl": stats["approx_kl"],
            "beta": beta,
            "response_length": mask.sum(dim=1).mean().item(),
        }
        if ptx is not None:
            point["ptx_loss"] = stats["ptx_loss"]
        if warmup is not None:
            point["value_loss_before_warmup"], point["value_loss_after_warmup"] = warmup
        for key, value in point.items():
            _finite(float(value), key.replace("_", " "), number)
        point = {k: (v if k == "iteration" else round(float(v), 6)) for k, v in point.items()}
        history.append(point)
        reporter.progress(number, config.iterations, {k: v for k, v in point.items() if k != "iteration"})
        if checkpoint_dir is not None and number % config.checkpoint_every == 0 and number < config.iterations:
            path = Path(checkpoint_dir) / f"step-{number}"
            _save_checkpoint(path, policy, value_head, tokenizer, optimizer, kl_ctl, normalizer, number, config,
                             history)
            reporter.checkpoint(path, number)

    out_dir.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    done = config.iterations - start
    samples = done * config.batch_size
    return {
        "iterations": history,
        "initial_reward": history[0]["reward"] if history else None,
        "final_reward": history[-1]["reward"] if history else None,
        "final_kl": history[-1]["kl"] if history else None,
        "final_beta": kl_ctl.value,
        "score_offset": normalizer.offset,
        "score_scale": normalizer.scale,
        "resumed_from_iteration": start,
        "rollout_samples_per_second": samples / rollout_seconds if rollout_seconds else 0.0,
        "update_samples_per_second": samples * config.ppo_epochs / update_seconds if update_seconds else 0.0,
        "world_size": 1,
        "device": str(device()),
    }
