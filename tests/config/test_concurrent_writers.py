"""Many request threads writing at once, as 50 labelers do: every write lands, none waits forever."""

import threading

import pytest
from django.db import connection, connections, transaction

from annotation.models import Prompt
from annotation.prompt_text import normalized_hash


@pytest.mark.django_db(transaction=True)
def test_threads_writing_at_once_all_commit_and_a_failed_one_frees_the_writer_slot(project):
    errors, threads = [], []

    def write(i: int) -> None:
        try:
            for j in range(5):
                messages = [{"role": "user", "content": f"question {i}-{j}"}]
                with transaction.atomic():
                    Prompt.objects.create(project=project, messages=messages, normalized_hash=normalized_hash(messages))
            with transaction.atomic():  # a transaction that fails must give the write lock back
                Prompt.objects.create(project=project, messages=[{"role": "user", "content": f"rolled back {i}"}],
                                      normalized_hash=f"x{i}")
                raise RuntimeError("the request failed half-way")
        except RuntimeError:
            pass
        except Exception as exc:  # any database error is the failure under test
            errors.append(exc)
        finally:
            connections.close_all()

    for i in range(20):
        threads.append(threading.Thread(target=write, args=(i,)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors
    assert not any(thread.is_alive() for thread in threads)
    assert Prompt.objects.filter(project=project).count() == 100
    assert not Prompt.objects.filter(project=project, messages__0__content__startswith="rolled back").exists()
    if connection.vendor == "sqlite":
        from config.db.sqlite3.base import _write_lock

        lock = _write_lock(str(connection.settings_dict["NAME"]))
        assert lock.acquire(timeout=1)  # nobody kept the writer slot
        lock.release()



def test_a_web_process_reuses_a_finished_requests_sqlite_connection_but_never_one_left_mid_transaction(
        tmp_path, django_db_blocker):
    from django.db.utils import ConnectionHandler

    from config.db.sqlite3.base import DatabaseWrapper

    handler = ConnectionHandler({"default": {
        "ENGINE": "config.db.sqlite3", "NAME": str(tmp_path / "embedded.sqlite3"),
        "OPTIONS": {"timeout": 5, "transaction_mode": "IMMEDIATE", "reuse_connections": 4}}})
    settings_dict = handler.settings["default"]

    def request_connection() -> DatabaseWrapper:
        wrapper = DatabaseWrapper(settings_dict, alias="pooled")
        wrapper.ensure_connection()
        return wrapper

    with django_db_blocker.unblock():  # a database file of its own, not the test database
        first = request_connection()
        first.cursor().execute("CREATE TABLE answer (text TEXT)")
        first.cursor().execute("INSERT INTO answer VALUES ('whole')")
        opened = first.connection
        first.close()  # the request ended
        second = request_connection()
        assert second.connection is opened  # the next request got it back, schema and pragmas ready

        second.set_autocommit(False)  # a request that dies half-way through a write
        second.cursor().execute("UPDATE answer SET text = 'half-done'")
        second.close()
        third = request_connection()
        assert third.connection is not opened
        assert third.cursor().execute("SELECT text FROM answer").fetchall() == [("whole",)]
        third.close()
