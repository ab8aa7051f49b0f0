"""Size limits of uploads, per kind (``settings.UPLOAD_LIMITS``), checked before the body is parsed.

The ``Content-Length`` of the request is checked first, so an over-size upload is refused before
Django spools it to disk; the parsed file's size is checked again (a request without a length, or a
multipart body whose other fields made the total look small). The answer is a 413 that names the
limit and the setting that raises it. Limits on a single line live with the parsers
(``annotation/imports.py``, ``training/corpus.py``), which read line by line.
"""

from __future__ import annotations

from django.conf import settings

SETTING_OF = {"import": "TUNELOOP_MAX_IMPORT_BYTES", "corpus": "TUNELOOP_MAX_CORPUS_BYTES",
              "knowledge": "TUNELOOP_MAX_KNOWLEDGE_BYTES"}
WHAT = {"import": "a prompt import", "corpus": "a corpus", "knowledge": "a knowledge-base upload"}


def upload_limit(kind: str) -> int:
    return settings.UPLOAD_LIMITS[kind]


def too_large(kind: str, *, request=None, upload=None) -> str | None:
    """The 413 message when the request's declared length or the upload's size passes the limit."""
    limit = upload_limit(kind)
    size = 0
    if request is not None:
        try:
            size = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            size = 0
    if upload is not None:
        size = max(size, upload.size or 0)
    if size <= limit:
        return None
    return (f"the file is too large for {WHAT[kind]}: {_mb(size)} over the limit of {_mb(limit)} "
            f"(the server's {SETTING_OF[kind]}); split it into smaller files")


def _mb(n: int) -> str:
    return f"{n / 1_048_576:.1f} MB"
