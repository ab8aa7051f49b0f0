"""Writing checkpoint state so that a full disk says so.

``torch.save`` straight to a file reports a full disk as ``RuntimeError: [enforce fail at
inline_container.cc] unexpected pos …``, which tells a manager nothing. Serialising to memory first
and writing through Python's file I/O raises ``OSError: [Errno 28] No space left on device``, the
reason a run page should show. The cost is one copy of the state in memory while it is written.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch


def torch_save(obj, path: str | Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with open(path, "wb") as out:
        out.write(buffer.getbuffer())
