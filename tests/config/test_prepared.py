"""Prepared queries (config/db/prepared.py) give what the ORM gives, for the values of each call."""

from datetime import datetime, timedelta

import pytest
from django.db.models import Q
from django.utils import timezone

from annotation.models import Assignment, AssignmentStatus, Prompt
from config.db.prepared import Prepared
from tests.annotation.helpers import prompt

pytestmark = pytest.mark.django_db


def _leases(kind, *, project_id, user_id, now):
    return (Assignment.objects.filter(project_id=project_id, kind=kind, status=AssignmentStatus.LEASED)
            .filter(Q(user_id=user_id) | Q(expires_at__lte=now)).select_related("prompt", "user").order_by("id"))


LEASES = Prepared(_leases, project_id=int, user_id=int, now=datetime)


def _lease(project, item, user, *, expires_in: int, kind="demonstration"):
    now = timezone.now()
    return Assignment.objects.create(project=project, prompt=item, user=user, kind=kind,
                                     expires_at=now + timedelta(seconds=expires_in))


def _fields(obj):
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


def test_rows_come_back_as_the_orm_makes_them_related_objects_included(project, bob, charlie,
                                                                        django_assert_num_queries):
    mine = _lease(project, prompt(project, "Mine"), bob, expires_in=600)
    passed = _lease(project, prompt(project, "Passed"), charlie, expires_in=-5)
    _lease(project, prompt(project, "Charlie's live one"), charlie, expires_in=600)
    now = timezone.now()
    expected = list(_leases("demonstration", project_id=project.pk, user_id=bob.pk, now=now))

    with django_assert_num_queries(1):
        got = LEASES.objects("demonstration", project_id=project.pk, user_id=bob.pk, now=now)
        assert [a.pk for a in got] == [mine.pk, passed.pk]
        assert got[0].prompt.text == "Mine" and got[1].user.username == "charlie"  # no query: select_related
    assert [_fields(a) for a in got] == [_fields(a) for a in expected]
    assert [_fields(a.prompt) for a in got] == [_fields(a.prompt) for a in expected]
    assert got[0].prompt.messages == [{"role": "user", "content": "Mine"}]  # JSON read back, dates aware
    assert timezone.is_aware(got[0].expires_at)


def test_each_call_uses_its_own_values_and_each_shape_its_own_sql(project, bob, charlie):
    _lease(project, prompt(project, "Bob's"), bob, expires_in=600)
    _lease(project, prompt(project, "Charlie's"), charlie, expires_in=600)
    _lease(project, prompt(project, "Bob's ranking"), bob, expires_in=600, kind="ranking")
    now = timezone.now()

    def texts(kind, user):
        return [a.prompt.text for a in LEASES.objects(kind, project_id=project.pk, user_id=user.pk, now=now)]

    assert texts("demonstration", bob) == ["Bob's"]
    assert texts("demonstration", charlie) == ["Charlie's"]
    assert texts("ranking", bob) == ["Bob's ranking"]
    assert texts("ranking", charlie) == []
    # A later moment: every lease has passed, so all of them come back, whoever asks.
    later = [a.prompt.text for a in LEASES.objects("demonstration", project_id=project.pk, user_id=charlie.pk,
                                                   now=now + timedelta(hours=1))]
    assert later == ["Bob's", "Charlie's"]


def test_an_id_no_column_can_hold_matches_nothing_as_in_the_orm(project):
    first = Prepared(lambda *, pk: Prompt.objects.filter(pk=pk), pk=int)
    prompt(project, "Only one")
    assert first.first(pk=10**30) is None and not Prompt.objects.filter(pk=10**30).exists()


def test_an_argument_that_is_not_a_plain_parameter_is_refused_when_built(project):
    wrapped = Prepared(lambda *, text: Prompt.objects.filter(normalized_hash__contains=text), text=str)
    with pytest.raises(ValueError, match="not plain parameters"):
        wrapped.objects(text="abc")
    with pytest.raises(TypeError, match="takes"):
        LEASES.objects("demonstration", project_id=project.pk, user_id=1)


def test_a_statement_runs_with_its_values(project):
    a, b = prompt(project, "A"), prompt(project, "B")
    count = Prepared(lambda *, pk: ("SELECT COUNT(*) FROM annotation_prompt WHERE id >= %s", [pk]), pk=int)
    with count.execute(pk=a.pk) as cursor:
        assert cursor.fetchone()[0] == 2
    with count.execute(pk=b.pk) as cursor:
        assert cursor.fetchone()[0] == 1
