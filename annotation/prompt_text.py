"""Prompt normalisation: the same question typed twice is one prompt (duplicates are reported)."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata

_SPACE = re.compile(r"\s+")


class PromptFormatError(ValueError):
    """A prompt record is not plain text nor OpenAI-style messages; the message names the field."""


def to_messages(record: dict) -> list[dict]:
    """Accept ``{"text": ...}``, ``{"prompt": ...}`` or ``{"messages": [...]}`` and return messages."""
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            raise PromptFormatError("field 'messages' must be a non-empty list")
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                raise PromptFormatError(f"field 'messages[{i}]' must be an object with 'role' and 'content'")
            if message.get("role") not in ("system", "user", "assistant"):
                raise PromptFormatError(f"field 'messages[{i}].role' must be system, user or assistant")
            if not isinstance(message.get("content"), str) or not message["content"].strip():
                raise PromptFormatError(f"field 'messages[{i}].content' must be non-empty text")
        if messages[-1]["role"] != "user":
            raise PromptFormatError("field 'messages' must end with a user message")
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    for key in ("text", "prompt"):
        if key in record:
            value = record[key]
            if not isinstance(value, str) or not value.strip():
                raise PromptFormatError(f"field '{key}' must be non-empty text")
            return [{"role": "user", "content": value}]
    raise PromptFormatError("needs a 'text', 'prompt' or 'messages' field")


def normalized_hash(messages: list[dict]) -> str:
    """sha256 of the messages with case, Unicode form and whitespace normalised."""
    canon = [
        [m["role"], _SPACE.sub(" ", unicodedata.normalize("NFKC", m["content"])).strip().casefold()]
        for m in messages
    ]
    return hashlib.sha256(json.dumps(canon, ensure_ascii=False).encode()).hexdigest()
