"""Queries whose SQL is built once per process and run many times with new values (the labeling hot path).

Building a queryset and compiling it costs the ORM 0.2-0.7 ms of CPU per query (filters resolved,
joins and the select list set up, ordering checked), for SQL that is the same on every request but for
its values: SQLite itself answers these queries in 10-30 µs. ``Prepared`` builds the queryset once
per database and shape, with marker values in place of the arguments, remembers where each marker
landed among the SQL parameters, and then only swaps the values in. Rows come back as the ORM makes
them: the same converters (dates, JSON) and the same ``select_related`` objects, from the compiler
that built the SQL. (Django's converters read the value and the settings, never the database connection
that was open when the SQL was built.)

Arguments are ints, strings or aware datetimes, used in the query as they are (an argument must not
be computed on, e.g. ``value - 1``, or wrapped, e.g. ``__contains``: building fails when a marker does
not come out as a parameter of its own). What changes the SQL itself (a kind, a limit, a project
setting compiled into it) is the *shape*, passed positionally; each shape is built once.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

from django.db import connections
from django.db.models import QuerySet
from django.db.models.query import get_related_populators

_INT_BASE = 2**62 - 7_919  # far from any id this database will hand out
_INT64 = (-(2**63), 2**63 - 1)
_EPOCH = dt.datetime(1901, 1, 1, tzinfo=dt.UTC)


def _marker(kind: type, n: int):
    if kind is int:
        return _INT_BASE + n
    if kind is str:
        return f"\x00prepared-marker-{n}\x00"
    if kind is dt.datetime:
        return _EPOCH + dt.timedelta(seconds=n + 1)
    raise TypeError(f"a prepared argument is an int, a str or a datetime, not {kind.__name__}")


class _Statement:
    """SQL, its constant parameters, and which argument goes where."""

    def __init__(self, sql: str, params, markers: dict[str, object], adapt: Callable):
        self.sql = sql
        self.params = list(params)
        self.slots: list[tuple[int, str]] = []
        found = set()
        for position, value in enumerate(self.params):
            for name, marker in markers.items():
                if type(value) is type(adapt(marker)) and value == adapt(marker):
                    self.slots.append((position, name))
                    found.add(name)
        if missing := set(markers) - found:
            raise ValueError(f"prepared arguments {sorted(missing)} are not plain parameters of: {sql}")

    def bound(self, values: dict, adapt: Callable) -> list:
        params = list(self.params)
        for position, name in self.slots:
            params[position] = adapt(values[name])
        return params


class _Reader:
    """Model instances from rows of a compiled SELECT, as ``ModelIterable`` makes them."""

    def __init__(self, compiler, alias: str):
        self.compiler = compiler
        self.alias = alias
        klass_info, select = compiler.klass_info, compiler.select
        self.model = klass_info["model"]
        fields = klass_info["select_fields"]
        self.start, self.end = fields[0], fields[-1] + 1
        self.init_list = [f[0].target.attname for f in select[self.start:self.end]]
        self.populators = get_related_populators(klass_info, select, alias)
        self.converters = compiler.get_converters([s[0] for s in select[:compiler.col_count]])

    def objects(self, rows) -> list:
        if self.converters:
            rows = self.compiler.apply_converters(rows, self.converters)
        found = []
        for row in rows:
            obj = self.model.from_db(self.alias, self.init_list, row[self.start:self.end])
            for populator in self.populators:
                populator.populate(row, obj)
            found.append(obj)
        return found


class Prepared:
    """``build(*shape, **arguments)`` returns a QuerySet (read with ``objects``/``first``) or ``(sql, params)``
    (run with ``execute``); ``types`` names each argument's type: ``Prepared(build, key_hash=str)``."""

    def __init__(self, build: Callable, **types: type):
        self.build = build
        self.types = types
        self._built: dict[tuple, tuple[_Statement, _Reader | None]] = {}
        self._lock = threading.Lock()

    def _statement(self, alias: str, shape: tuple) -> tuple[_Statement, _Reader | None]:
        key = (alias, *shape)
        built = self._built.get(key)
        if built is None:
            with self._lock:
                built = self._built.get(key) or self._compile(alias, shape)
                self._built[key] = built
        return built

    def _compile(self, alias: str, shape: tuple) -> tuple[_Statement, _Reader | None]:
        connection = connections[alias]
        markers = {name: _marker(kind, n) for n, (name, kind) in enumerate(self.types.items())}
        made = self.build(*shape, **markers)
        reader = None
        if isinstance(made, QuerySet):
            compiler = made.query.get_compiler(using=alias)
            sql, params = compiler.as_sql()
            reader = _Reader(compiler, alias)
        else:
            sql, params = made
        return _Statement(sql, params, markers, self._adapter(connection)), reader

    @staticmethod
    def _adapter(connection) -> Callable:
        def adapt(value):
            if isinstance(value, dt.datetime):
                return connection.ops.adapt_datetimefield_value(value)
            return value

        return adapt

    def _run(self, shape: tuple, alias: str, values: dict):
        if set(values) != set(self.types):
            raise TypeError(f"prepared query takes {sorted(self.types)}, got {sorted(values)}")
        statement, reader = self._statement(alias, shape)
        connection = connections[alias]
        cursor = connection.cursor()
        cursor.execute(statement.sql, statement.bound(values, self._adapter(connection)))
        return cursor, reader

    def objects(self, *shape, using: str = "default", **values) -> list:
        if any(type(v) is int and not _INT64[0] <= v <= _INT64[1] for v in values.values()):
            return []  # as the ORM's exact lookup: an id no column can hold matches nothing
        cursor, reader = self._run(shape, using, values)
        with cursor:
            rows = cursor.fetchall()
        return reader.objects(rows)

    def first(self, *shape, using: str = "default", **values):
        found = self.objects(*shape, using=using, **values)
        return found[0] if found else None

    def execute(self, *shape, using: str = "default", **values):
        """Run a prepared ``(sql, params)`` statement; returns the open cursor (``with`` it)."""
        return self._run(shape, using, values)[0]
