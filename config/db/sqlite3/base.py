"""SQLite for the embedded default: one writer at a time per process, waiting in line, not polling.

SQLite lets one transaction write at a time. Under ``transaction_mode=IMMEDIATE`` every
``atomic`` block asks for the write lock at ``BEGIN``; a connection that does not get it sleeps in
SQLite's busy handler (1, 2, 5 ... 100 ms naps) and asks again, so with 50 labelers some requests
lose that race many times in a row: at 50 labelers with no think time the next-task p99 was 5 s
while the median was 0.8 s (issue 19). The web server is one process with a thread per request, so
here the threads queue on a process-wide lock before ``BEGIN`` and are woken the moment the writer
before them commits. Other processes (the Celery worker, ``manage.py`` commands) still meet at
SQLite's own lock with the busy timeout; they write rarely (run heartbeats, progress).

The lock is held from ``BEGIN`` to ``COMMIT``/``ROLLBACK`` (or the connection's close), so write
transactions must stay short: read what you can before ``atomic``. Waiting for it is bounded by
the ``timeout`` option; past it the transaction goes on to SQLite's lock, which then answers
"database is locked" as it always did.

In a web process (``OPTIONS["reuse_connections"]``, set by the settings when ``TUNELOOP_WEB_PROCESS``
is on) a closed connection goes back to a small per-process pool instead of being closed. Under ASGI
every request runs in a thread of its own, so Django's per-thread persistent connections never get
reused: each request opened the file, registered Django's SQL functions, ran the pragmas and parsed
the schema again (2-3 ms of CPU, a sixth of a next-task request), and its prepared statements were
thrown away with it. A connection is reused only when no transaction is open on it, and only by the
process that opened it (a forked child starts with an empty pool).
"""

from __future__ import annotations

import os
import threading

from django.db.backends.sqlite3 import base

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()
_IDLE: dict[tuple[int, str], list] = {}  # (process id, database) -> connections nobody uses now


def _write_lock(name: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(name, threading.Lock())


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._holds_write_lock = False
        self._reuse = 0

    def get_connection_params(self):
        params = super().get_connection_params()
        self._reuse = int(params.pop("reuse_connections", 0) or 0)
        return params

    def _idle(self) -> list | None:
        if self._reuse <= 0 or self.is_in_memory_db():
            return None
        return _IDLE.setdefault((os.getpid(), str(self.settings_dict["NAME"])), [])

    def get_new_connection(self, conn_params):
        idle = self._idle()
        if idle:
            with _LOCKS_GUARD:
                if idle:
                    return idle.pop()
        return super().get_new_connection(conn_params)

    def _start_transaction_under_autocommit(self):
        lock = _write_lock(str(self.settings_dict["NAME"]))
        timeout = float(self.settings_dict.get("OPTIONS", {}).get("timeout", 5))
        self._holds_write_lock = lock.acquire(timeout=timeout)
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._release_write_lock()
            raise

    def _release_write_lock(self) -> None:
        if self._holds_write_lock:
            self._holds_write_lock = False
            _write_lock(str(self.settings_dict["NAME"])).release()

    def _commit(self):
        try:
            return super()._commit()
        finally:
            if not (self.connection is not None and self.connection.in_transaction):
                self._release_write_lock()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self._release_write_lock()

    def _close(self):
        try:
            idle = self._idle()
            if idle is not None and self.connection is not None and not self.connection.in_transaction:
                with _LOCKS_GUARD:
                    if len(idle) < self._reuse:
                        idle.append(self.connection)
                        return None
            return super()._close()
        finally:
            self._release_write_lock()
