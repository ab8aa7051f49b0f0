"""The moderation encoder as an ONNX Runtime int8 session: built from the weights at first load, cached on disk.

Why: on one CPU core, ONNX Runtime's int8 kernels (per-channel weights, dynamic activations) ran the
3-layer encoder about 1.5-2x faster than torch's dynamic int8 (``bench/moderation_latency.py`` measures
both), and its latency does not jump when torch's thread pool is shared.

Nothing large is committed: the graph is exported from the model the folder describes (the package's
base weights plus the folder's own tensors), quantised, and written to a cache folder keyed by a hash of
every weight and of the library versions, so a retrained head or adapter, or a new onnxruntime, gets a
new file. The cache lives under ``TUNELOOP_MODERATION_CACHE`` or ``$TUNELOOP_DATA_DIR/cache/moderation``
(the data dir the server already owns); files are written to a temporary name and renamed, so two
processes building at once never read a half-written file. Each retrained version adds a file (~17 MB
for the shipped encoder): loading one refreshes its modification time, and building a new one removes
the files no process has loaded for ``STALE_DAYS`` days.

The graph takes ``input_ids`` and ``attention_mask`` (int64, windows x tokens) and returns the windows'
mean-pooled vectors; the classification head stays outside (a 384 x C matmul in numpy), so a head
trained on pooled features is used as is.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
# ONNX Runtime's own fusion of Add + LayerNormalization into SkipLayerNormalization: its CPU kernel
# ran this 384-wide encoder ~10 % slower than the two ops it replaces (1 thread, 128 tokens:
# bench/moderation_latency.py --compare); the outputs differ only by float rounding.
DISABLED_FUSIONS = ("SkipLayerNormFusion",)
STALE_DAYS = 30  # an encoder file no process loaded for this long is removed when another is built


def available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def cache_dir() -> Path:
    explicit = os.environ.get("TUNELOOP_MODERATION_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("TUNELOOP_DATA_DIR") or ROOT / "var") / "cache" / "moderation"


def weights_key(model: torch.nn.Module, quantize: str, attention: str = "eager") -> str:
    """A hash of every tensor of ``model`` plus what shapes the exported file (libraries, quantisation,
    how attention was written out)."""
    import onnxruntime

    recipe = "v1" if attention == "sdpa" else f"v2-{attention}"  # v1: the files built before the choice existed
    digest = hashlib.sha256(f"{onnxruntime.__version__}|{torch.__version__}|{quantize}|{recipe}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


class _Pooled(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(states.dtype)
        return (states * m).sum(1) / m.sum(1).clamp(min=1.0)


class _DropQuantizerRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        path = record.pathname.replace("\\", "/")
        return "/onnxruntime/quantization/" not in path


@contextlib.contextmanager
def quiet_quantizer():
    """Keep the quantiser's records (it logs INFO/WARNING through the *root* logger) out of the server's log.

    A logger's filters see only records logged on it, so a filter on the root logger drops the
    quantiser's ``logging.info(...)`` calls and nothing a named logger propagates. A root logger with no
    handler gets a NullHandler meanwhile: ``logging.warning`` would otherwise call ``basicConfig`` and
    leave a stderr handler installed for good.
    """
    root = logging.getLogger()
    keep_out, placeholder = _DropQuantizerRecords(), None
    root.addFilter(keep_out)
    if not root.handlers:
        placeholder = logging.NullHandler()
        root.addHandler(placeholder)
    try:
        yield
    finally:
        root.removeFilter(keep_out)
        if placeholder is not None:
            root.removeHandler(placeholder)


@contextlib.contextmanager
def attention_written_as(model: torch.nn.Module, attention: str):
    """``model`` (a transformers BertModel) tracing its attention as ``attention`` ("eager": plain
    MatMul/Softmax; "sdpa": torch's scaled_dot_product_attention, which the exporter decomposes with
    extra NaN guards and mask plumbing), put back as it was afterwards (training shares the model)."""
    config = getattr(model, "config", None)
    before = getattr(config, "_attn_implementation", None)
    if config is None or before is None:
        yield
        return
    config._attn_implementation = attention
    try:
        yield
    finally:
        config._attn_implementation = before


def build(model: torch.nn.Module, path: Path, quantize: str, attention: str = "eager") -> None:
    """Export ``model`` (a float BertModel) with mean pooling to ONNX at ``path``, int8 if asked.

    Attention is traced as "eager" by default: the same arithmetic as torch's SDPA, but a graph that
    ran 15-30 % faster on one thread (bench/moderation_latency.py --compare; 128 and 16 tokens).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        plain = Path(tmp) / "float.onnx"
        ids = torch.tensor([[2, 1, 1, 3]])  # any ids the vocabulary has: the shapes are dynamic
        with warnings.catch_warnings(), attention_written_as(model, attention):
            warnings.simplefilter("ignore")  # the TorchScript exporter warns about tracing BERT's mask code
            torch.onnx.export(_Pooled(model).eval(), (ids, torch.ones_like(ids)), str(plain),
                              input_names=["input_ids", "attention_mask"], output_names=["pooled"],
                              dynamic_axes={"input_ids": {0: "windows", 1: "tokens"},
                                            "attention_mask": {0: "windows", 1: "tokens"}},
                              opset_version=17, dynamo=False)
        final = Path(tmp) / "final.onnx"
        if quantize == "int8":
            with quiet_quantizer():
                quantize_dynamic(str(plain), str(final), weight_type=QuantType.QInt8, per_channel=True)
        else:
            plain.rename(final)
        os.replace(final, path)


def prune_stale(directory: Path, *, keep: Path, days: float = STALE_DAYS) -> list[Path]:
    """Remove the encoder files of ``directory`` that no process has loaded for ``days`` (loading refreshes
    a file's modification time), never ``keep``; returns the files removed. A file another process removed
    first, or one that cannot be removed, is skipped: pruning only saves disk."""
    cutoff = time.time() - days * 86400
    removed = []
    for path in directory.glob("encoder-*.onnx"):
        try:
            if path != keep and path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path)
        except OSError:
            continue
    return removed


class OnnxEncoder:
    """Pooled vectors of token windows through an ONNX Runtime session (numpy in, numpy out)."""

    def __init__(self, model: torch.nn.Module, quantize: str, *, threads: int = 1, attention: str = "eager") -> None:
        key = weights_key(model, quantize, attention)
        self.path = cache_dir() / f"encoder-{key}.onnx"
        if self.path.is_file():
            with contextlib.suppress(OSError):  # a read-only cache: nothing to prune there either
                os.utime(self.path)  # in use: what ``prune_stale`` goes by
        else:
            log.info("building the moderation encoder's ONNX file %s (once per weights)", self.path)
            build(model, self.path, quantize, attention)
            for old in prune_stale(self.path.parent, keep=self.path):
                log.info("removed the moderation encoder file %s (not loaded for %d days)", old, STALE_DAYS)
        self.set_threads(threads)

    def set_threads(self, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle pool threads sleep instead of spinning: with 2 threads on a shared 2-core machine, spinning
        # burnt ~45 % more CPU per check and doubled the wall p50 at 128 tokens (one thread has no pool).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.threads = options.intra_op_num_threads
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"],
                                            disabled_optimizers=list(DISABLED_FUSIONS))

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
