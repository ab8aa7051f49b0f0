"""The API's JSON parser and exception handler: bodies too big or too deep are a clear 4xx, not a 500.

DRF reads a JSON body through ``request.body``, so Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``
(``TUNELOOP_MAX_BODY_BYTES``) bounds it; Django answers a body past it with an HTML 400, which
``exception_handler`` turns into ``413 {"detail": ...}``. Nesting too deep for Python's parser
(``[[[[...``, a ``RecursionError``) is a 400 here.
"""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser
from rest_framework.views import exception_handler as drf_exception_handler


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "the request body is too large"
    default_code = "payload_too_large"


class JSONBodyParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None


def exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge("the request body is over the server's limit (TUNELOOP_MAX_BODY_BYTES)")
    return drf_exception_handler(exc, context)
