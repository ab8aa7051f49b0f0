"""Pre-training tokens/s: in-process vs a 2-process torchrun (gloo) on this machine.

Same corpus, model, global batch and steps. Prints both rates and their ratio. On a 2-core CPU
the 2-process run pays gloo's all-reduce and a second interpreter; on GPU nodes (NCCL) the ratio
is where data parallelism pays off. Run: .venv/bin/python bench/pretrain_throughput.py [--steps N]
"""

import argparse
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.launch import run_in_processes
from training.pretrain import PretrainConfig, pretrain
from training.reporting import NullReporter

CORPUS = Path(__file__).resolve().parents[1] / "training" / "corpus_data" / "tiny_stories.txt"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--nproc", type=int, default=2)
    args = parser.parse_args()
    config = PretrainConfig(vocab_size=1024, n_layer=4, n_embd=128, n_head=4, block_size=128, batch_size=16,
                            max_steps=args.steps, eval_every=10**9, warmup_steps=5)
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", str(args.nproc))))
        single = pretrain(CORPUS, tmp / "one", config, NullReporter())
        multi = run_in_processes(
            "training.pretrain:pretrain",
            {"corpus_path": str(CORPUS), "out_dir": str(tmp / "two"), "config": asdict(config)},
            args.nproc, NullReporter(), tmp / "launch",
        )
    one, many = single["tokens_per_second"], multi["tokens_per_second"]
    print(f"model: {single['parameters']:,} parameters, {args.steps} steps of {config.batch_size}x{config.block_size} tokens")
    print(f"in-process (torch threads={torch.get_num_threads()}): {one:,.0f} tokens/s")
    print(f"torchrun --nproc-per-node {args.nproc} (gloo, 1 thread each): {many:,.0f} tokens/s")
    print(f"ratio torchrun/in-process: {many / one:.2f}x")


if __name__ == "__main__":
    main()
