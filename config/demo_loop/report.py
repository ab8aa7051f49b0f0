"""The demo loop's report: one Markdown document, saved in the data dir (the app serves it) and
optionally copied to ``docs/``.

Figures come from the run rows (SFT eval loss, RM held-out accuracy by epoch, PPO reward and KL
by iteration) and from ``evaluate.compare`` (side-by-side answers, RM-judged win rate).
"""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings

from config.demo_loop.driver import LoopResult
from config.demo_loop.evaluate import Comparison


def reports_dir() -> Path:
    folder = Path(settings.DATA_DIR) / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def report_path(slug: str) -> Path:
    return reports_dir() / f"{slug}.md"


def _fmt(value, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "—" if value is None else str(value)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def render(result: LoopResult, comparison: Comparison | None, *, title: str, machine: str) -> str:
    lines = [f"# {title}", "", f"Project `{result.slug}` — {machine}.", "", "## Stages (wall time)", "",
             "| stage | seconds | detail |", "|---|---:|---|"]
    for stage in result.stages:
        detail = ", ".join(f"{k}={_fmt(v)}" for k, v in stage.detail.items() if not isinstance(v, (dict, list)))
        lines.append(f"| {stage.name} | {stage.seconds:.1f} | {_cell(detail)} |")
    lines.append(f"| **total** | {sum(s.seconds for s in result.stages):.1f} | |")

    sft = (result.runs.get("sft") or {}).get("summary") or {}
    rm = (result.runs.get("reward") or {}).get("summary") or {}
    ppo = (result.runs.get("ppo") or {}).get("summary") or {}
    lines += ["", "## Versions", "", "| stage | version | figure |", "|---|---|---|",
              f"| SFT | `{result.versions.get('sft')}` | eval loss {_fmt(sft.get('eval_loss_initial'))} → "
              f"{_fmt(sft.get('eval_loss'))} |",
              f"| reward model | `{result.versions.get('reward')}` | held-out pairwise accuracy "
              f"{_fmt(rm.get('eval_accuracy_initial'))} → {_fmt(rm.get('eval_accuracy'))} "
              f"(by epoch: {', '.join(_fmt(a) for a in rm.get('accuracy_by_epoch') or [])}; "
              f"{rm.get('pairs_eval', '?')} held-out pairs) |",
              f"| PPO | `{result.versions.get('ppo')}` | reward {_fmt(ppo.get('initial_reward') or _first(ppo, 'reward'))}"
              f" → {_fmt(ppo.get('final_reward'))}, KL {_fmt(ppo.get('final_kl'))} |"]
    iterations = ppo.get("iterations") or []
    if iterations:
        lines += ["", "## PPO by iteration", "", "| iteration | reward | KL | entropy | clip fraction | value loss | β |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for it in iterations:
            lines.append("| " + " | ".join(_fmt(it.get(k)) for k in
                                             ("iteration", "reward", "kl", "entropy", "clip_fraction", "value_loss",
                                              "beta")) + " |")
    if comparison is not None:
        lines += ["", "## Held-out prompts, side by side (greedy; RM score in brackets)", ""]
        labels = list(comparison.answers)
        lines += ["| prompt | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
        for i, prompt in enumerate(comparison.prompts):
            cells = [f"{_cell(comparison.answers[label][i])} [{_fmt(comparison.scores[label][i], 2)}]"
                     for label in labels]
            lines.append(f"| {_cell(prompt)} | " + " | ".join(cells) + " |")
        lines += ["", "Mean RM score of sampled answers: "
                  + ", ".join(f"{k} {_fmt(v)}" for k, v in comparison.sampled_means.items())
                  + f". RM-judged win rate of PPO over SFT: **{_fmt(comparison.win_rate, 3)}**."]
    if result.chat_answer:
        lines += ["", "## Served", "", f"`/v1/chat/completions` on the deployed PPO version answered: "
                  f"“{_cell(result.chat_answer)}”"]
    return "\n".join(lines) + "\n"


def _first(summary: dict, key: str):
    iterations = summary.get("iterations") or []
    return iterations[0].get(key) if iterations else None


def save(slug: str, markdown: str, data: dict, copy_to: Path | None = None) -> Path:
    path = report_path(slug)
    path.write_text(markdown)
    path.with_suffix(".json").write_text(json.dumps(data, indent=2, default=str))
    if copy_to is not None:
        copy_to.parent.mkdir(parents=True, exist_ok=True)
        copy_to.write_text(markdown)
    return path
