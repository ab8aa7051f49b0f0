"""The in-process engine on a tiny model, and the remote engine against a fake OpenAI-style server."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from serving.engine import EngineBusy, EngineError, GenerationParams, LocalEngine, RemoteEngine, engine_for


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return LocalEngine(tiny_model_dir, capacity=1, max_queue=0, queue_timeout=0.2)


def test_the_local_engine_streams_the_same_text_generate_would(engine):
    import torch

    messages = [{"role": "user", "content": "hello"}]
    pieces = list(engine.stream(messages, GenerationParams(max_tokens=12, temperature=0)))
    assert len(pieces) >= 2, "the answer arrives in several pieces"
    ids = torch.tensor([engine.prompt_ids(messages)])
    with torch.no_grad():
        out = engine.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
                                    do_sample=False, eos_token_id=engine.eos, pad_token_id=engine.tokenizer.pad_token_id)
    expected = engine.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert "".join(pieces) == expected


def test_a_request_beyond_capacity_is_refused_not_crashed(engine):
    first = engine.stream([{"role": "user", "content": "hi"}], GenerationParams(max_tokens=8, temperature=0))
    with pytest.raises(EngineBusy):
        engine.stream([{"role": "user", "content": "hi"}], GenerationParams(max_tokens=8))
    first.close()
    second = engine.stream([{"role": "user", "content": "hi"}], GenerationParams(max_tokens=4, temperature=0))
    assert isinstance("".join(second), str), "closing the first stream frees its slot"


def test_two_requests_stream_side_by_side(tiny_model_dir):
    engine = LocalEngine(tiny_model_dir, capacity=2)
    params = GenerationParams(max_tokens=16, temperature=0)
    a = engine.stream([{"role": "user", "content": "hello"}], params)
    b = engine.stream([{"role": "user", "content": "hello"}], params)
    interleaved = [next(a), next(b)]
    assert all(isinstance(p, str) for p in interleaved)
    assert "".join([interleaved[0], *a]) == "".join([interleaved[1], *b]), "same prompt, greedy: same answer"


def test_engines_are_cached_per_folder(tiny_model_dir):
    assert engine_for(tiny_model_dir) is engine_for(tiny_model_dir)


def test_a_folder_without_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(EngineError, match=r"config\.json"):
        LocalEngine(tmp_path)


class FakeOpenAI(BaseHTTPRequestHandler):
    """A tiny OpenAI-compatible server: streams the words of the last user message back."""

    requests: list[dict] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeOpenAI.requests.append({"body": body, "auth": self.headers.get("Authorization")})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        words = body["messages"][-1]["content"].split()
        for word in words:
            chunk = {"choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        if (body.get("stream_options") or {}).get("include_usage"):  # as vLLM does
            usage = {"prompt_tokens": 11, "completion_tokens": len(words), "total_tokens": 11 + len(words)}
            self.wfile.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_the_remote_engine_streams_from_an_openai_compatible_server(fake_server):
    engine = RemoteEngine(fake_server, model="ppo-3", api_key="secret")
    generation = engine.stream([{"role": "user", "content": "echo these three"}], GenerationParams(max_tokens=9))
    assert list(generation) == ["echo ", "these ", "three "]
    assert (generation.prompt_tokens, generation.completion_tokens) == (11, 3), "usage is the server's own count"
    sent = FakeOpenAI.requests[-1]
    assert sent["body"]["model"] == "ppo-3" and sent["body"]["stream"] is True and sent["body"]["max_tokens"] == 9
    assert sent["auth"] == "Bearer secret"


def test_an_unreachable_remote_engine_is_a_clear_error():
    engine = RemoteEngine("http://127.0.0.1:9/v1", model="x", timeout=2)
    with pytest.raises(EngineError, match="unreachable"):
        list(engine.stream([{"role": "user", "content": "hi"}], GenerationParams()))


def test_a_reply_closed_before_it_streamed_frees_its_slot(engine):
    """A client that disconnects right after the request must not leave the engine's only slot taken."""
    from serving.moderation import load_moderator
    from serving.pipeline import ModeratedReply

    reply = ModeratedReply(messages=[{"role": "user", "content": "What is the capital of France?"}], engine=engine,
                           params=GenerationParams(max_tokens=8), moderator=load_moderator(timeout_ms=0),
                           template_for=lambda categories: "T")
    reply.start()
    with pytest.raises(EngineBusy):
        engine.stream([{"role": "user", "content": "hi"}], GenerationParams(max_tokens=4))
    reply.close()
    engine.stream([{"role": "user", "content": "hi"}], GenerationParams(max_tokens=4)).close()
