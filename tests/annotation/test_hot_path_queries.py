"""What a labeler's request cycle costs the database: a fixed number of statements, whatever the project's size.

Each statement is CPU in the web process (and on SQLite, time under the one write lock); a query
added to the next-task or submit path multiplies by every labeler. The counts are the statements
Django runs, BEGIN and COMMIT included.
"""

from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.annotation.helpers import prompt
from tests.annotation.test_api_shapes import api_as

# API key + membership + own leases; the claim's transaction (on SQLite: UPDATE ... RETURNING and the
# lease; on PostgreSQL: SELECT ... FOR UPDATE SKIP LOCKED, the lease and the slot count); the prompt.
NEXT_TASK = {"sqlite": 8, "postgresql": 8}
# API key + membership + the task; the transaction: on SQLite the conditional UPDATE of the task and the
# label's INSERT; on PostgreSQL the row locks (prompt, task), the INSERT and the UPDATE.
SUBMIT = {"sqlite": 7, "postgresql": 9}
LIVE_TASK_AGAIN = 3  # API key + membership + own leases: the live task comes back without a write


def statements(call, *args, **kwargs) -> tuple[object, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        response = call(*args, **kwargs)
    return response, [q["sql"] for q in captured.captured_queries]


def test_next_task_and_submit_run_a_fixed_number_of_statements(project, bob):
    project.review_rate = 0
    project.save()
    for i in range(30):
        prompt(project, f"Question {i}")
    client = api_as(bob)
    base = f"/api/projects/{project.slug}"
    client.get(f"{base}/")  # the key's first use writes its last_used_at (then once a minute at most)

    for _ in range(3):  # the same on the first item as on later ones
        task, sql = statements(client.get, f"{base}/tasks/next/?kind=demonstration")
        assert task.status_code == 200 and len(sql) == NEXT_TASK[connection.vendor], sql
        again, sql = statements(client.get, f"{base}/tasks/next/?kind=demonstration")
        assert again.json()["id"] == task.json()["id"] and len(sql) == LIVE_TASK_AGAIN, sql
        done, sql = statements(client.post, f"{base}/tasks/{task.json()['id']}/demonstration/",
                               {"content": "An answer."}, format="json")
        assert done.status_code == 201 and len(sql) == SUBMIT[connection.vendor], sql
