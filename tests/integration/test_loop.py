"""The loop, end to end, through the API and a real Celery worker process, on a tiny model.

The same driver as ``manage.py demo_loop``: alice imports prompts, bob and charlie write
demonstrations, dave approves, SFT → sampling opens ranking tasks → bob and charlie rank → reward
model → PPO → alice deploys → bob's question through ``/v1/chat/completions`` is answered by the
PPO version → his thumbs-down on a chat answer becomes a new prompt of the project.
"""

import dataclasses
import shutil

import pytest

from annotation.models import Prompt, PromptSource
from config.demo_loop import session
from config.demo_loop.driver import LoopDriver, LoopSettings
from training.models import ModelVersion, VersionKind
from training.registry import lineage, model_version_register, version_dir, version_path

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TINY = LoopSettings(
    slug="loop", k=4, train_items=8, eval_items=2, poll_seconds=0.5, run_timeout=600,
    sft={"max_steps": 6, "batch_size": 4, "micro_batch_size": 4, "learning_rate": 1e-3, "max_length": 96,
         "eval_fraction": 0.25},
    sampling={"k": 4, "max_new_tokens": 12, "temperature": 1.0, "batch_size": 16},
    reward={"backbone": "trained", "epochs": 2, "batch_size": 4, "micro_batch_size": 2, "learning_rate": 1e-3, "max_length": 96,
            "eval_fraction": 0.25},
    ppo={"iterations": 2, "batch_size": 4, "mini_batch_size": 4, "ppo_epochs": 1, "max_new_tokens": 8},
)


@pytest.fixture
def shared_base(transactional_db, tiny_model_dir):
    folder = version_dir("base")
    shutil.copytree(tiny_model_dir, folder)
    return model_version_register(name="base", kind=VersionKind.POLICY, folder=folder)


def test_the_loop_turns_once_through_the_api(celery_worker, shared_base, client):
    celery_worker("loop")
    users = session.people()
    clients, chat = session.api_clients(users)

    result = LoopDriver(clients, chat, dataclasses.replace(TINY, base_version=shared_base.name), log=print).run()

    stages = [s.name for s in result.stages]
    assert stages[-1] == "deploy and chat" and result.runs["ppo"]["status"] == "succeeded"
    assert result.stages[1].detail["demonstrations"] == TINY.train_items
    assert result.stages[5].detail["rankings"] >= 1
    ppo = ModelVersion.objects.get(name=result.versions["ppo"])
    chain = lineage(ppo)
    assert [v.name for v in chain] == [result.versions["ppo"], result.versions["sft"], "base"]
    assert {v.snapshot.kind for v in chain if v.snapshot} == {"prompts", "sft"}
    assert ppo.run.reward_version.name == result.versions["reward"]
    assert ppo.run.reward_version.snapshot.kind == "preference"
    assert_is_the_models_own_answer(result.chat_answer, version_path(ppo), result.stages[-1].detail["question"])

    before = Prompt.objects.filter(source=PromptSource.CHAT).count()
    thumbs_down_in_chat(client, users["bob"], result.slug, "Tell me a joke about databases")
    assert Prompt.objects.filter(source=PromptSource.CHAT, project__slug=result.slug).count() == before + 1


def assert_is_the_models_own_answer(answer: str, folder, question: str) -> None:
    """The chat answer is what the deployed PPO model writes greedily (the driver asks with temperature 0),
    not an empty string, an error text or a template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert answer.strip() and "<|im_" not in answer, repr(answer)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                       return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=48,
                             pad_token_id=tokenizer.pad_token_id)
    own = " ".join(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).split())
    assert own.startswith(" ".join(answer.split())[:24]), (answer, own)


def thumbs_down_in_chat(client, user, slug: str, question: str) -> None:
    """``user`` asks on the chat page (the deployed PPO version answers) and gives the answer a thumbs-down."""
    import json

    client.force_login(user)
    response = client.post(f"/projects/{slug}/chat/send", {"text": question})
    assert response.status_code == 200, response.content
    frames = [json.loads(f[len("data: "):]) for f in b"".join(response.streaming_content).decode().split("\n\n")
              if f.startswith("data: {")]
    assert frames[-1]["type"] == "done", frames[-1]
    feedback = client.post(f"/projects/{slug}/chat/messages/{frames[-1]['message']}/feedback", {"kind": "down"})
    assert feedback.status_code == 200
