"""The queue's claim and submission on a database with one writer at a time (SQLite, the embedded default).

SQLite has no ``SKIP LOCKED``: every write transaction runs alone, behind a per-process lock
(``config.db.sqlite3``). Whatever runs while that lock is held delays every labeler waiting
behind it, and in a web process the holder also shares the interpreter with the other request
threads: each statement gives the GIL up and must win it back. So a claim here holds the lock for
two statements only, both compiled by the ORM before the lock is taken:

1. ``UPDATE prompt SET <slot taken> WHERE id = (first open candidate) RETURNING id``: picks and
   counts in one statement. The pick runs inside SQLite (the partial index on open items, then the
   labeler's own rows by the unique index), which needs no GIL: no Python between choosing and taking;
2. the lease upsert (``queue._lease``).

A submission holds it for two statements too: ``UPDATE assignment SET status = submitted WHERE id = %s
AND status = leased`` (the check and the transition in one statement) and the label's INSERT. Any
other state (a retry, an expired or skipped lease, someone else's task) goes the general way
(``queue._locked``), which says what happened.

Measured at 50 labelers with no think time (docs/operations.md): the write lock was held 22 ms
(p50) per transaction when the ORM built and ran five or six statements inside it; 0.8 ms now.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Model, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.sql import InsertQuery, UpdateQuery

from annotation.errors import AnnotationError
from annotation.models import Assignment, AssignmentStatus, Project, Prompt
from annotation.slots import slots_moved
from config.db.prepared import Prepared


def compiled_update(queryset: QuerySet, **values) -> tuple[str, tuple]:
    """SQL and parameters of ``queryset.update(**values)``, built now, to run later (under a lock)."""
    query = queryset.query.chain(UpdateQuery)
    query.add_update_values(values)
    query.annotations = {}
    return query.get_compiler(queryset.db).as_sql()


def compiled_insert(obj: Model) -> tuple[str, tuple]:
    """SQL and parameters that insert ``obj`` and return its generated columns, as ``obj.save()`` would."""
    meta = obj._meta
    fields = [f for f in meta.local_concrete_fields if not f.generated and f is not meta.auto_field]
    query = InsertQuery(type(obj))
    query.insert_values(fields, [obj])
    compiler = query.get_compiler(connection.alias)
    compiler.returning_fields = meta.db_returning_fields
    [(sql, params)] = compiler.as_sql()
    return sql, params


def _first_by_index(candidates: QuerySet[Prompt], index: str) -> RawSQL:
    """``candidates``' first id, read through ``index``. SQLite's planner prefers the plain project index
    to the partial one of open items (even with statistics) and then walks every done item first."""
    if index not in {i.name for i in Prompt._meta.indexes}:
        raise ValueError(f"no index {index!r} on prompts")
    sql, params = candidates.values("pk")[:1].query.sql_with_params()
    table = connection.ops.quote_name(Prompt._meta.db_table)
    hinted = sql.replace(f"FROM {table} WHERE", f"FROM {table} INDEXED BY {connection.ops.quote_name(index)} WHERE", 1)
    return RawSQL(hinted, params)  # noqa: S611 - the ORM's own SQL (values stay parameters) and a known index name


def _claim_sql(candidates, kind: str, gold: bool, index: str, labels_per_item: int, completions_per_prompt: int, *,
               project_id: int, user_id: int) -> tuple[str, tuple]:
    """The claim's one statement: take a slot of the first of ``candidates(project, user, kind, gold=...)``
    and return its id. Built for stand-ins of the project and the labeler; ``Prepared`` swaps their ids."""
    project = Project(pk=project_id, labels_per_item=labels_per_item, completions_per_prompt=completions_per_prompt)
    user = get_user_model()(pk=user_id)
    first = _first_by_index(candidates(project, user, kind, gold=gold), index)
    sql, params = compiled_update(Prompt.objects.filter(pk=first), **slots_moved(kind, 1, project))
    return f"{sql} RETURNING {connection.ops.quote_name('id')}", params


_CLAIM = Prepared(_claim_sql, project_id=int, user_id=int)
_PROMPT = Prepared(lambda *, prompt_id: Prompt.objects.filter(pk=prompt_id), prompt_id=int)


def claim(*, project: Project, user, kind: str, gold: bool, candidates, index: str, now: datetime,
          lease) -> Assignment | None:
    """Lease the first open item of ``candidates(project, user, kind, gold=gold)`` (``queue._candidates``,
    read through the partial ``index`` that holds them) to ``user``; None when there is none. ``lease``
    is ``queue._lease``. The statement is compiled once per shape (kind, pool, the project's slot settings)."""
    shape = (candidates, kind, gold, index, project.labels_per_item, project.completions_per_prompt)
    with transaction.atomic():
        with _CLAIM.execute(*shape, project_id=project.pk, user_id=user.pk) as cursor:
            row = cursor.fetchone()
        if row is None:
            return None
        assignment = lease(project, Prompt(pk=row[0], project=project), user, kind, now)
        if assignment is None:  # cannot happen: the candidates exclude the labeler's own live rows
            transaction.set_rollback(True)
            return None
    assignment.prompt = _PROMPT.first(prompt_id=row[0])  # read after the commit, outside the lock
    return assignment


def _finish_sql(*, assignment_id: int, now: datetime) -> tuple[str, tuple]:
    """A LEASED assignment becomes SUBMITTED: the check and the transition in one statement."""
    return compiled_update(Assignment.objects.filter(pk=assignment_id, status=AssignmentStatus.LEASED),
                           status=AssignmentStatus.SUBMITTED, finished_at=now)


_FINISH = Prepared(_finish_sql, assignment_id=int, now=datetime)


def submit(*, assignment: Assignment, user, kind: str, build, now: datetime):
    """Record the label ``build(assignment)`` makes for a LEASED ``assignment`` of ``user``; None when the
    assignment is in any other state (read before the lock or found under it): the caller then takes
    the general path, which returns an earlier label or says what is wrong."""
    if (assignment.status != AssignmentStatus.LEASED or assignment.user_id != getattr(user, "pk", None)
            or assignment.kind != kind):
        return None
    try:
        label = build(assignment)
    except AnnotationError:
        return None  # the general path decides: a retry of an earlier submission returns that label
    insert_sql, insert_params = compiled_insert(label)
    returning = [f.attname for f in label._meta.db_returning_fields]
    with transaction.atomic():
        with _FINISH.execute(assignment_id=assignment.pk, now=now) as cursor:
            if cursor.rowcount != 1:
                transaction.set_rollback(True)
                return None
        with connection.cursor() as cursor:
            cursor.execute(insert_sql, insert_params)
            values = cursor.fetchone()
    for attname, value in zip(returning, values, strict=True):
        setattr(label, attname, value)
    label._state.adding, label._state.db = False, connection.alias
    assignment.status, assignment.finished_at = AssignmentStatus.SUBMITTED, now
    return label
