"""Training the encoder half of the moderation model: the head on served features, and fine-tuning the top layer(s).

``fit_head`` trains the linear head on frozen pooled vectors (``served_features``: what the server's
runtime computes, int8 included). ``finetune_top`` then trains the encoder's top layer(s) with the
head, end to end from the pooled vector to the loss.

Why only the top: on a shared CPU a full backward pass through the encoder for the corpus does not fit a
run's budget; the lower layers' token states are computed once (no gradient, the expensive part) and the
top ``layers`` are trained on them with the head, so each epoch costs about one forward pass of those
layers. The loss is the head's (null-masked binary cross-entropy, positives up-weighted per category);
the head starts from the frozen-feature fit, the layers from the base weights, with a smaller learning
rate for the layers. What changes is returned as the encoder's own tensors (``tuned``): the folder stores
them next to the head and the base weights still come from the package.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch

from training.reporting import Reporter, TrainingDiverged


def fit_head(x: torch.Tensor, labels: np.ndarray, known: np.ndarray, config,
             reporter: Reporter, *, init: tuple[torch.Tensor, torch.Tensor] | None, step0: int,
             ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """A linear multi-label head on pooled embeddings: null-masked, class-balanced, full-batch Adam."""
    from training.moderation import masked_bce

    torch.manual_seed(config.seed)
    y, mask = torch.from_numpy(labels), torch.from_numpy(known)
    n_cat, hidden = y.shape[1], x.shape[1]
    mean, std = x.mean(0), x.std(0).clamp(min=1e-4)
    xs = (x - mean) / std  # standardised features train faster; folded back into the weights below
    weight = torch.nn.Parameter(torch.zeros(n_cat, hidden))
    pos, neg = (y * mask).sum(0), ((1 - y) * mask).sum(0)
    bias = torch.nn.Parameter(torch.log((pos + 1) / (neg + 1)))
    if init is not None:  # the parent's head, expressed on standardised features
        w0, b0 = init
        with torch.no_grad():
            weight.copy_(w0 * std)
            bias.copy_(b0 + w0 @ mean)
    pos_weight = ((neg + 1) / (pos + 1)).clamp(1.0, 50.0)
    optimizer = torch.optim.Adam([weight, bias], lr=config.head_learning_rate, weight_decay=1e-4)
    loss_value = float("nan")
    for epoch in range(config.head_epochs):
        optimizer.zero_grad()
        loss = masked_bce(xs @ weight.T + bias, y, mask, pos_weight)
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise TrainingDiverged(f"moderation head loss became {loss_value} at step {epoch + 1}")
        loss.backward()
        optimizer.step()
        reporter.progress(step0 + epoch + 1, config.epochs + config.head_epochs, {"loss": loss_value})
    w = weight.detach() / std
    return w, bias.detach() - w @ mean, loss_value


def lower_states(encoder, norms: list[str], layers: int, *, cache: dict | None = None,
                 batch_size: int = 32) -> list[torch.Tensor]:
    """Per text, the token states (tokens, H) entering the top ``layers`` layers (float16, no padding)."""
    model = encoder.model
    cut = model.config.num_hidden_layers - layers
    cache = {} if cache is None else cache
    todo = sorted({n for n in norms if n not in cache}, key=len)
    every = model.encoder.layer
    model.encoder.layer = every[:cut]  # the top layers' output is not needed here: skip their cost
    try:
        with torch.inference_mode():
            for start in range(0, len(todo), batch_size):
                chunk = todo[start:start + batch_size]
                batch = encoder.tokenize(chunk)
                hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
                for i, text in enumerate(chunk):
                    cache[text] = hidden[i, :int(batch["attention_mask"][i].sum())].half().clone()
    finally:
        model.encoder.layer = every
    return [cache[n] for n in norms]


def top_forward(model, states: list[torch.Tensor], layers: int) -> torch.Tensor:
    """Mean-pooled output of the top ``layers`` layers over padded ``states``."""
    lengths = torch.tensor([len(s) for s in states])
    x = torch.nn.utils.rnn.pad_sequence([s.float() for s in states], batch_first=True)
    mask = (torch.arange(x.shape[1])[None, :] < lengths[:, None]).float()
    extended = (1.0 - mask)[:, None, None, :] * torch.finfo(x.dtype).min
    for layer in model.encoder.layer[model.config.num_hidden_layers - layers:]:
        x = layer(x, attention_mask=extended)
        x = x[0] if isinstance(x, tuple) else x
    m = mask.unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def finetune_top(encoder, head: tuple[torch.Tensor, torch.Tensor], states: list[torch.Tensor], labels: np.ndarray,
                 known: np.ndarray, *, layers: int, epochs: int, batch_size: int = 32, lr_layers: float = 3e-5,
                 lr_head: float = 1e-3, seed: int = 0, reporter: Reporter | None = None, step0: int = 0,
                 total_steps: int = 0) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], float]:
    """Train the top ``layers`` of ``encoder.model`` (in place) and the head; returns (weight, bias, tuned, loss)."""
    from training.moderation import masked_bce

    model = encoder.model
    torch.manual_seed(seed)
    top = list(model.encoder.layer[model.config.num_hidden_layers - layers:])
    params = [p for layer in top for p in layer.parameters()]
    weight = torch.nn.Parameter(head[0].clone().float())
    bias = torch.nn.Parameter(head[1].clone().float())
    y, mask = torch.from_numpy(labels), torch.from_numpy(known)
    pos, neg = (y * mask).sum(0), ((1 - y) * mask).sum(0)
    pos_weight = ((neg + 1) / (pos + 1)).clamp(1.0, 50.0)
    optimizer = torch.optim.AdamW([{"params": params, "lr": lr_layers, "weight_decay": 0.01},
                                   {"params": [weight, bias], "lr": lr_head, "weight_decay": 1e-4}])
    order = list(range(len(states)))
    rng = random.Random(seed)
    steps_per_epoch = math.ceil(len(order) / batch_size)
    loss_value, step = float("nan"), 0
    for layer in top:
        layer.train()
    try:
        for _epoch in range(epochs):
            rng.shuffle(order)
            # Similar lengths in a batch: less padding (batches are shuffled, not their members' order)
            batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
            batches = [sorted(b, key=lambda i: len(states[i])) for b in batches]
            for batch in batches:
                optimizer.zero_grad()
                pooled = top_forward(model, [states[i] for i in batch], layers)
                loss = masked_bce(pooled @ weight.T + bias, y[batch], mask[batch], pos_weight)
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    raise TrainingDiverged(f"moderation fine-tuning loss became {loss_value} at step {step + 1}")
                loss.backward()
                torch.nn.utils.clip_grad_norm_([*params, weight, bias], 1.0)
                optimizer.step()
                step += 1
                if reporter is not None:
                    reporter.progress(step0 + step, total_steps or step0 + epochs * steps_per_epoch,
                                      {"loss": loss_value})
    finally:
        for layer in top:
            layer.eval()
    first = model.config.num_hidden_layers - layers
    tuned = {k: v.detach().clone() for k, v in model.state_dict().items()
             if any(k.startswith(f"encoder.layer.{i}.") for i in range(first, model.config.num_hidden_layers))}
    return weight.detach(), bias.detach(), tuned, loss_value


def pooled_after(encoder, states: list[torch.Tensor], layers: int, batch_size: int = 64) -> torch.Tensor:
    """Pooled vectors of ``states`` through the (tuned) top layers, no gradient."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(states), batch_size):
            out.append(top_forward(encoder.model, states[start:start + batch_size], layers))
    return torch.cat(out) if out else torch.zeros(0, encoder.hidden_size)


def served_features(encoder, norms: list[str], *, runtime: str, quantize: str,
                    cache: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Pooled vectors of ``norms`` as the server computes them (its runtime and int8), first window only.

    The head is trained and calibrated on these rather than on float features: int8 moves the
    vectors enough to move a threshold, and ONNX Runtime reads a text about three times faster than
    a float torch forward, which is what lets a run embed the corpus on a CPU.
    """
    from training.moderation_encoder import EncoderClassifier

    cache = {} if cache is None else cache
    todo = [n for n in dict.fromkeys(norms) if n not in cache]
    if todo:
        probe = EncoderClassifier(encoder, torch.zeros(1, encoder.hidden_size), torch.zeros(1), ["_"],
                                  runtime=runtime, quantize=quantize)
        for text, enc in zip(todo, probe._tokenizer.encode_batch(todo), strict=True):
            cache[text] = torch.from_numpy(probe.pooled_ids(probe.windows(enc.ids)[:1])[0].copy())
    return torch.stack([cache[n] for n in norms]) if norms else torch.zeros(0, encoder.hidden_size)
