"""The ``Content-Security-Policy`` header on every answer (``settings.CONTENT_SECURITY_POLICY``).

Scripts run only from our own static files, so an injected ``<script>`` or ``onclick=`` cannot run
even if escaping ever failed. (django-csp would do the same; one header needs no dependency.)
"""

from __future__ import annotations

from django.conf import settings
from django.utils.deprecation import MiddlewareMixin


class ContentSecurityPolicyMiddleware(MiddlewareMixin):
    def process_response(self, request, response):
        policy = settings.CONTENT_SECURITY_POLICY
        if policy and "Content-Security-Policy" not in response.headers:
            response.headers["Content-Security-Policy"] = policy
        return response
