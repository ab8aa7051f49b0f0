"""The sign-in page with a throttle: failed attempts are counted per username and per client address.

Past ``LOGIN_FAILURES_PER_USER`` failures for one username, or ``LOGIN_FAILURES_PER_IP`` from one
address, within ``LOGIN_WINDOW_SECONDS``, further attempts are refused with 429 and a message
saying when to try again, without checking the password (so guessing stops even when a guess
would be right). A successful sign-in clears its username's count. The counts live in Django's
cache: per process by default, shared by every process with ``TUNELOOP_CACHE_URL``. The address
is ``REMOTE_ADDR``; behind a proxy, have the ASGI server take it from the proxy's header.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.core.cache import cache


def _keys(request) -> list[tuple[str, int]]:
    username = (request.POST.get("username") or "").strip().casefold()
    keys = [(f"tuneloop:login:ip:{request.META.get('REMOTE_ADDR', '')}", settings.LOGIN_FAILURES_PER_IP)]
    if username:
        digest = hashlib.sha256(username.encode()).hexdigest()[:32]
        keys.append((f"tuneloop:login:user:{digest}", settings.LOGIN_FAILURES_PER_USER))
    return keys


class ThrottledLoginView(auth_views.LoginView):
    def post(self, request, *args, **kwargs):
        if any((cache.get(key) or 0) >= limit for key, limit in _keys(request)):
            minutes = max(1, round(settings.LOGIN_WINDOW_SECONDS / 60))
            form = self.get_form()
            form.errors.clear()
            return self.render_to_response(self.get_context_data(form=form, throttled=minutes), status=429)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        for key, _ in _keys(self.request):
            if not cache.add(key, 1, settings.LOGIN_WINDOW_SECONDS):
                try:
                    cache.incr(key)
                except ValueError:  # expired between add and incr
                    cache.add(key, 1, settings.LOGIN_WINDOW_SECONDS)
        return super().form_invalid(form)

    def form_valid(self, form):
        cache.delete_many([key for key, _ in _keys(self.request) if ":user:" in key])
        return super().form_valid(form)
