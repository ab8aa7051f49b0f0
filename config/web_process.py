"""What a web process sets before Django and torch load (``config/asgi.py``, ``config/wsgi.py``)."""

import os

# OpenMP threads of the chat engine's decoding team spin only briefly once a parallel region ends, then
# sleep. A web process decodes next to moderation and request threads: a team that spins for long
# (libgomp's default, 300,000 spins) takes the cores from the thread doing the work, one that never
# spins (OMP_WAIT_POLICY=PASSIVE) pays a wake-up in each of a step's ~200 parallel regions. On 2 idle
# cores, 8 streaming users (bench/chat_concurrency.py): PASSIVE 46-52 tokens/s, 10,000 spins 59-63,
# 300,000 spins 53-60 with 1.6x the CPU per token at 1 user. Read once, before torch loads; an
# OMP_WAIT_POLICY or GOMP_SPINCOUNT of your own wins.
SPIN_COUNT = "10000"


def prepare_web_process() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["TUNELOOP_WEB_PROCESS"] = "1"  # settings: a connection pool here, not in forked Celery workers
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)
