"""Drop DRF's ``authtoken_token`` table: those tokens were stored in plain text.

The REST API now authenticates with the hashed API keys (``serving.ApiKey``); an install that
had ``rest_framework.authtoken`` keeps no readable credential behind.
"""

from django.db import migrations


def drop_plaintext_tokens(apps, schema_editor):
    if "authtoken_token" in schema_editor.connection.introspection.table_names():
        schema_editor.execute(f"DROP TABLE {schema_editor.quote_name('authtoken_token')}")


class Migration(migrations.Migration):
    dependencies = [("serving", "0003_deployment_max_tokens")]

    operations = [migrations.RunPython(drop_plaintext_tokens, migrations.RunPython.noop)]
