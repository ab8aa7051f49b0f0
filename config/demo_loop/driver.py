"""One turn of the loop, driven through the platform's API by scripted people.

alice (manager) creates a project and imports prompts; bob and charlie (labelers) write
demonstrations; dave (reviewer) approves them; alice starts an SFT run, a sampling run that
opens ranking tasks, a reward-model run on the labelers' rankings and a PPO run, then deploys the
PPO policy; bob asks it a question through ``/v1/chat/completions``. Every step is an HTTP call a
person or script could make, so the loop exercises the same views, services and Celery worker as
real use. ``evaluate.py`` then compares the versions; ``report.py`` writes the page.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from config.demo_loop import labelers
from config.demo_loop.client import ApiClient, ApiFailed

TERMINAL = {"succeeded", "failed", "cancelled"}


@dataclass
class LoopSettings:
    """What one turn of the loop trains, and how long it may take."""

    slug: str = "demo-loop"
    base_version: str = "base"
    k: int = 4
    train_items: int = 26
    eval_items: int = 6
    sft: dict = field(default_factory=dict)
    sampling: dict = field(default_factory=dict)
    reward: dict = field(default_factory=dict)
    ppo: dict = field(default_factory=dict)
    run_timeout: float = 1800.0
    poll_seconds: float = 2.0


@dataclass
class Stage:
    name: str
    seconds: float
    detail: dict = field(default_factory=dict)


@dataclass
class LoopResult:
    slug: str
    stages: list[Stage] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    runs: dict[str, dict] = field(default_factory=dict)
    chat_answer: str = ""
    eval_prompts: list[str] = field(default_factory=list)


class LoopDriver:
    def __init__(self, clients: dict[str, ApiClient], chat: ApiClient, settings: LoopSettings,
                 log: Callable[[str], None] = print) -> None:
        self.clients, self.chat, self.settings, self.log = clients, chat, settings, log
        items = labelers.load_items()
        self.train = items[: settings.train_items]
        self.eval = items[settings.train_items: settings.train_items + settings.eval_items]
        self.by_prompt = {item.prompt: item for item in items}
        self.result = LoopResult(slug=settings.slug, eval_prompts=[i.prompt for i in self.eval])
        self.base = f"/api/projects/{settings.slug}"

    # --- one stage at a time, each timed ---

    def run(self) -> LoopResult:
        steps = [
            ("project and import", self.project_setup),
            ("demonstrations", self.demonstrations),
            ("review", lambda: self.review("demonstration")),
            ("sft run", lambda: self.train_run("sft", parent=self.settings.base_version, config=self.settings.sft)),
            ("sampling run", lambda: self.train_run("sampling", parent=self.result.versions["sft"],
                                                    config=self.settings.sampling)),
            ("rankings", self.rankings),
            ("ranking review", lambda: self.review("ranking")),
            ("reward run", lambda: self.train_run("reward", parent=self.result.versions["sft"],
                                                  config=self.settings.reward)),
            ("ppo run", lambda: self.train_run("ppo", parent=self.result.versions["sft"],
                                               reward=self.result.versions["reward"], config=self.settings.ppo)),
            ("deploy and chat", self.deploy_and_chat),
        ]
        for name, step in steps:
            self.log(f"== {name}")
            started = time.monotonic()
            detail = step() or {}
            stage = Stage(name, round(time.monotonic() - started, 1), detail)
            self.result.stages.append(stage)
            self.log(f"   {stage.seconds:.1f} s {detail}")
        return self.result

    def project_setup(self) -> dict:
        alice = self.clients["alice"]
        alice.post("/api/projects/", {
            "name": f"Demo loop ({self.settings.slug})", "slug": self.settings.slug,
            "completions_per_prompt": self.settings.k, "labels_per_item": 1, "review_rate": 1.0,
        })
        for username, role in (("bob", "labeler"), ("charlie", "labeler"), ("dave", "reviewer")):
            alice.post(f"{self.base}/members/", {"username": username, "role": role})
            # Membership needs consent: each invited person accepts (a member's role change is immediate).
            for invitation in self.clients[username].get("/api/invitations/").data["results"]:
                if invitation["project"] == self.settings.slug:
                    self.clients[username].post(f"/api/invitations/{invitation['id']}/accept/")
        records = [{"prompt": item.prompt} for item in self.train + self.eval]
        report = alice.post(f"{self.base}/prompts/", {"records": records}).data
        return {"prompts": len(records), "import": report}

    def _labeler_tasks(self, kind: str):
        """Yield (client, task) round-robin over the labelers until no one gets a task."""
        active = ["bob", "charlie"]
        while active:
            for name in list(active):
                response = self.clients[name].get(f"{self.base}/tasks/next/", {"kind": kind}, expect=(200, 204))
                if response.status == 204 or not response.data:
                    active.remove(name)
                    continue
                yield self.clients[name], response.data

    def demonstrations(self) -> dict:
        written = 0
        for client, task in self._labeler_tasks("demonstration"):
            item = self.by_prompt.get(_prompt_text(task))
            if item is None or item in self.eval:
                client.post(f"{self.base}/tasks/{task['id']}/skip/", {"reason": "held out for evaluation"})
                continue
            client.post(f"{self.base}/tasks/{task['id']}/demonstration/", {"content": item.demonstration})
            written += 1
        return {"demonstrations": written}

    def rankings(self) -> dict:
        ranked, pairs = 0, 0
        for client, task in self._labeler_tasks("ranking"):
            item = self.by_prompt.get(_prompt_text(task))
            completions = task["completions"]
            if item is None:
                client.post(f"{self.base}/tasks/{task['id']}/skip/", {"reason": "not part of the demo set"})
                continue
            tiers = labelers.rank([c["text"] for c in completions], item.keywords)
            order = [[completions[i]["id"] for i in tier] for tier in tiers]
            client.post(f"{self.base}/tasks/{task['id']}/ranking/", {"order": order, "flags": {}})
            ranked += 1
            sizes = [len(t) for t in tiers]
            pairs += sum(a * b for i, a in enumerate(sizes) for b in sizes[i + 1:])
        return {"rankings": ranked, "pairs": pairs}

    def review(self, kind: str) -> dict:
        dave, approved = self.clients["dave"], 0
        while True:
            page = dave.get(f"{self.base}/reviews/", {"kind": kind}).data
            items = page.get("results", page) if isinstance(page, dict) else page
            if not items:
                return {"approved": approved}
            for item in items:
                dave.post(f"{self.base}/reviews/{kind}/{item['id']}/approve/", {})
                approved += 1

    def train_run(self, kind: str, *, parent: str, config: dict, reward: str | None = None) -> dict:
        payload = {"kind": kind, "parent_version": parent, "config": config}
        if reward:
            payload["reward_version"] = reward
        run = self.clients["alice"].post(f"{self.base}/runs/", payload).data
        run = self.wait(run["id"])
        self.result.runs[kind] = run
        if run.get("model_version"):
            self.result.versions[kind] = run["model_version"]
        return {"run": run["id"], "version": run.get("model_version"), "summary": _brief(run.get("summary") or {})}

    def wait(self, run_id: int) -> dict:
        deadline = time.monotonic() + self.settings.run_timeout
        last = None
        while time.monotonic() < deadline:
            run = self.clients["alice"].get(f"{self.base}/runs/{run_id}/").data
            if run["status"] in TERMINAL:
                if run["status"] != "succeeded":
                    raise ApiFailed(f"run #{run_id} ({run['kind']}) {run['status']}: {run.get('error')}")
                return run
            progress = (run.get("step"), run.get("total_steps"))
            if progress != last:
                self.log(f"   run #{run_id} {run['kind']} {run['status']} step {progress[0]}/{progress[1]}")
                last = progress
            time.sleep(self.settings.poll_seconds)
        raise ApiFailed(f"run #{run_id} did not finish within {self.settings.run_timeout:.0f} s")

    def deploy_and_chat(self) -> dict:
        policy = self.result.versions["ppo"]
        model = self.clients["alice"].post(f"{self.base}/deployments/", {"policy": policy}).data["model"]
        question = self.eval[0].prompt if self.eval else self.train[0].prompt
        answer = self.chat.post("/v1/chat/completions", {
            "model": model, "messages": [{"role": "user", "content": question}], "max_tokens": 48,
            "temperature": 0,
        }).data
        self.result.chat_answer = answer["choices"][0]["message"]["content"]
        return {"model": answer["model"], "question": question, "answer": self.result.chat_answer}


def _prompt_text(task: dict) -> str:
    prompt = task.get("prompt") or {}
    if isinstance(prompt, str):
        return prompt
    if prompt.get("text"):
        return prompt["text"]
    messages = prompt.get("messages") or task.get("messages") or []
    users = [m["content"] for m in messages if m.get("role") == "user"]
    return users[-1] if users else ""


def _brief(summary: dict) -> dict:
    """The scalar figures of a run summary (its per-iteration lists stay on the run row)."""
    return {k: v for k, v in summary.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
