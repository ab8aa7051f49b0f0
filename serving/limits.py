"""Per-user caps on the serving side: how many generations one user may run at once.

The engine has a few slots shared by every project and user of a process. Without a per-user cap
one script (or one person with several tabs) can hold all of them and everybody else gets 429.
A ``UserSlot`` is counted in Django's cache (shared by every process when ``TUNELOOP_CACHE_URL``
points at Redis, per process otherwise), taken before the engine slot and given back with it.
The count expires after ``SLOT_TTL`` seconds, so a process killed mid-answer cannot lock a user
out for good.
"""

from __future__ import annotations

import contextlib

from django.conf import settings
from django.core.cache import cache

from serving.engine import EngineBusy

SLOT_TTL = 15 * 60


class UserBusy(EngineBusy):
    """The user already runs as many generations as one user may (the API answers 429)."""


class UserSlot:
    """One of ``user``'s concurrent generations; ``release()`` is idempotent."""

    def __init__(self, user_id: int) -> None:
        self.key = f"tuneloop:generations:{user_id}"
        self.held = False

    def take(self) -> UserSlot:
        limit = settings.GENERATIONS_PER_USER
        cache.add(self.key, 0, SLOT_TTL)
        try:
            count = cache.incr(self.key)
        except ValueError:  # expired between add and incr
            cache.add(self.key, 1, SLOT_TTL)
            count = 1
        if count > limit:
            cache.decr(self.key)
            raise UserBusy(f"you already have {limit} generation{'s' if limit != 1 else ''} running; "
                           "wait for one to finish (TUNELOOP_GENERATIONS_PER_USER)")
        self.held = True
        return self

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                if cache.decr(self.key) < 0:
                    cache.set(self.key, 0, SLOT_TTL)
            except ValueError:  # expired meanwhile: nothing left to give back
                pass

    def __del__(self) -> None:  # a turn dropped without close (a response never iterated nor closed)
        with contextlib.suppress(Exception):
            self.release()


def user_slot(user) -> UserSlot | None:
    """A slot taken for ``user`` (``UserBusy`` when they are at the cap); None for an anonymous caller."""
    if user is None or not getattr(user, "pk", None):
        return None
    return UserSlot(user.pk).take()
