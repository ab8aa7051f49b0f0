"""The OpenAPI description of ``/v1/chat/completions``'s answer, with its ``tuneloop`` extension field.

OpenAI's clients keep fields they do not know (``response.model_extra["tuneloop"]``,
``response.to_dict()["tuneloop"]``), so the passages an answer was given travel beside the standard
fields: ``tuneloop.citations`` lists them as numbered in the prompt, each with ``cited`` true when the
answer names it ``[n]``; ``tuneloop.cited`` is those numbers. A streamed answer carries the same field
on its final chunk (the one with ``finish_reason``). A deployment without knowledge bases returns an
empty list.
"""

from __future__ import annotations

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

CITATION_FIELDS = {
    "n": serializers.IntegerField(help_text="The passage's number in the prompt; the answer cites it as [n]."),
    "chunk_id": serializers.IntegerField(),
    "document_id": serializers.IntegerField(),
    "knowledge_base_id": serializers.IntegerField(),
    "title": serializers.CharField(help_text="The document's title."),
    "section": serializers.CharField(help_text="Heading path of the passage, e.g. 'Install > Linux'."),
    "source": serializers.CharField(help_text="The uploaded file's name (or the record's url/title)."),
    "url": serializers.CharField(help_text="The document's own url, else its page on this site."),
    "text": serializers.CharField(),
    "cited": serializers.BooleanField(help_text="The answer cites this passage."),
}
EXTENSION_FIELDS = {
    "citations": inline_serializer("TuneloopCitation", CITATION_FIELDS, many=True,
                                   help_text="Passages retrieved for the answer (search results), flagged ones "
                                             "left out."),
    "cited": serializers.ListField(child=serializers.IntegerField(), help_text="Numbers the answer cites."),
}
CHAT_RESPONSE = inline_serializer("ChatCompletion", {
    "id": serializers.CharField(), "object": serializers.CharField(), "created": serializers.IntegerField(),
    "model": serializers.CharField(),
    "choices": serializers.ListField(child=serializers.DictField(), help_text="OpenAI's choices."),
    "usage": serializers.DictField(),
    "tuneloop": inline_serializer("TuneloopExtension", EXTENSION_FIELDS,
                                  help_text="Tuneloop's extension: the passages the answer was given and cites. "
                                            "Streamed answers carry it on the final chunk."),
})
