import pytest

from tests.serving.fakes import ScriptedEngine


@pytest.fixture
def scripted(monkeypatch):
    """Make every deployment answer with a scripted text; returns the engine to inspect its calls."""
    from serving import runtime

    def install(answer: str, piece: int = 3) -> ScriptedEngine:
        engine = ScriptedEngine(answer, piece)
        monkeypatch.setattr(runtime, "engine_of", lambda deployment: engine)
        return engine

    return install


def sse_events(response) -> list[dict]:
    import json

    body = b"".join(response.streaming_content).decode()
    return [json.loads(chunk[len("data: "):]) for chunk in body.split("\n\n") if chunk.startswith("data: {")]
