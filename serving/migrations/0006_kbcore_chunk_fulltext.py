"""A GIN full-text index on knowledge chunks, for TUNELOOP_KNOWLEDGE_LEXICAL=postgres (PostgreSQL only).

The expression must match the one serving/knowledge/lexical_pg.py queries, or the index goes unused.
SQLite gets nothing: its lexical search is the in-process BM25.
"""

from django.db import migrations

INDEX = "knowledge_chunk_fts"
CREATE = (f"CREATE INDEX IF NOT EXISTS {INDEX} ON serving_knowledgechunk "
          "USING gin (to_tsvector('english'::regconfig, text))")


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):

    dependencies = [
        ("serving", "0005_knowledge_bases"),
    ]

    operations = [migrations.RunPython(create, drop)]
