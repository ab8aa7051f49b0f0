"""The encoder served through ONNX Runtime gives the scores of the torch model it was exported from, is built
once per set of weights (cached on disk), and a changed model gets its own file."""

import numpy as np
import torch

from training.moderation_encoder import EncoderClassifier
from training.sentence_encoder import tiny_encoder

WORDS = ["the", "cat", "sat", "on", "mat", "i", "will", "hurt", "you", "how", "do", "kill", "a", "python", "process"]
TEXTS = ["the cat sat on the mat", "i will hurt you", "how do i kill a python process",
         " ".join(["the cat sat on the mat"] * 12)]  # longer than a window: read in windows


def classifier(runtime, *, seed=0, quantize=""):
    encoder = tiny_encoder(vocab=WORDS, seed=seed)
    torch.manual_seed(seed)
    return EncoderClassifier(encoder, torch.randn(3, encoder.hidden_size), torch.zeros(3), ["a", "b", "c"],
                             source="folder", runtime=runtime, quantize=quantize)


def test_onnx_scores_match_torch(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELOOP_MODERATION_CACHE", str(tmp_path))
    torch_model, onnx_model = classifier("torch"), classifier("onnx")
    before = onnx_model.encoder.model.config._attn_implementation
    for text in TEXTS:
        assert np.allclose(torch_model.logits(text), onnx_model.logits(text), atol=1e-3)
    # the export traces attention its own way; the torch model (training shares it) is left as it was
    assert onnx_model.encoder.model.config._attn_implementation == before
    assert len(torch_model.windows(torch_model._tokenizer.encode(TEXTS[-1]).ids)) > 1

    quantized = classifier("onnx", quantize="int8")
    for text in TEXTS:  # int8 moves the scores a little, not the verdicts of clear cases
        assert np.corrcoef(torch_model.logits(text), quantized.logits(text))[0, 1] > 0.9


def test_the_onnx_file_is_built_once_per_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELOOP_MODERATION_CACHE", str(tmp_path))
    first = classifier("onnx")
    first.logits(TEXTS[0])
    built = sorted(tmp_path.glob("*.onnx"))
    assert len(built) == 1
    inode = built[0].stat().st_ino

    again = classifier("onnx")
    again.logits(TEXTS[0])
    assert sorted(tmp_path.glob("*.onnx")) == built and built[0].stat().st_ino == inode, "not rebuilt"

    classifier("onnx", seed=1).logits(TEXTS[0])  # other weights (a fine-tuned encoder): another file
    assert len(list(tmp_path.glob("*.onnx"))) == 2


def test_building_a_new_file_removes_the_ones_nobody_loaded_for_a_month(tmp_path, monkeypatch):
    import os
    import time

    from training.moderation_onnx import STALE_DAYS

    monkeypatch.setenv("TUNELOOP_MODERATION_CACHE", str(tmp_path))
    day = 86400
    classifier("onnx").logits(TEXTS[0])  # built at the first check
    in_use_file = next(tmp_path.glob("encoder-*.onnx"))
    old, recent, other = tmp_path / "encoder-old.onnx", tmp_path / "encoder-recent.onnx", tmp_path / "notes.txt"
    for path, age in ((old, STALE_DAYS + 10), (recent, STALE_DAYS - 5), (other, STALE_DAYS + 10), (in_use_file, 40)):
        path.touch()
        os.utime(path, (time.time() - age * day,) * 2)
    classifier("onnx").logits(TEXTS[0])  # the same weights, loaded again: its file counts as in use from now
    assert in_use_file.stat().st_mtime > time.time() - day

    classifier("onnx", seed=1).logits(TEXTS[0])  # other weights: a new file, and the stale ones go
    names = {p.name for p in tmp_path.iterdir()}
    assert "encoder-old.onnx" not in names
    assert {"encoder-recent.onnx", "notes.txt", in_use_file.name} <= names
    assert len(list(tmp_path.glob("encoder-*.onnx"))) == 3


def test_the_first_int8_export_keeps_the_quantiser_out_of_the_log(tmp_path, monkeypatch, caplog):
    """onnxruntime's quantiser logs through the root logger (and, with no root handler, installs one that
    prints to stderr for good): a server's first check must not leave either behind."""
    import logging

    monkeypatch.setenv("TUNELOOP_MODERATION_CACHE", str(tmp_path))
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # a process whose logging nobody configured
    caplog.set_level(logging.DEBUG)
    root.handlers.append(caplog.handler)
    quantized = classifier("onnx", quantize="int8")
    quantized.logits(TEXTS[0])
    assert len(list(tmp_path.glob("*.onnx"))) == 1
    assert [r.getMessage() for r in caplog.records if "onnxruntime" in r.pathname] == []
    assert root.handlers == [caplog.handler] and root.filters == []
