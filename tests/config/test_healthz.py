from django.utils import timezone

from training.models import ModelVersion, WorkerHeartbeat


def _register_base(settings):
    folder = settings.MODEL_STORE_DIR / "base"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    ModelVersion.objects.create(name="base", kind="policy", path="base")


def staff(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("root", is_staff=True))
    return client


def test_healthz_is_503_and_names_each_missing_piece(client, django_user_model):
    response = staff(client, django_user_model).get("/healthz")
    assert response.status_code == 503
    problems = response.json()["problems"]
    assert "no live worker consumes queue 'training'" in problems
    assert "no live worker consumes queue 'sampling'" in problems
    assert any("base model is not provisioned" in p for p in problems)


def test_healthz_is_200_with_a_live_worker_per_queue_and_the_base_model(client, django_user_model, settings):
    _register_base(settings)
    WorkerHeartbeat.objects.create(
        hostname="w@host", queues=["training", "sampling", "default"], last_seen=timezone.now()
    )
    response = staff(client, django_user_model).get("/healthz")
    assert response.status_code == 200, response.json()
    assert response.json()["workers"]["training"] == ["w@host"]


def test_a_worker_that_stopped_beating_does_not_count(client, django_user_model, settings):
    _register_base(settings)
    WorkerHeartbeat.objects.create(
        hostname="old@host", queues=["training", "sampling", "default"],
        last_seen=timezone.now() - timezone.timedelta(minutes=10),
    )
    response = staff(client, django_user_model).get("/healthz")
    assert response.status_code == 503
    assert "no live worker consumes queue 'default'" in response.json()["problems"]


def test_anonymous_callers_get_a_status_per_component_and_no_names_or_paths(client, db, settings):
    _register_base(settings)
    WorkerHeartbeat.objects.create(hostname="secret-worker@build-7", queues=["training"], last_seen=timezone.now())
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "down", "components": {
        "database": "ok", "broker": "ok", "queues": {"training": "ok", "sampling": "down", "default": "down"},
        "model_store": "ok"}}
    assert "secret-worker" not in response.content.decode() and str(settings.MODEL_STORE_DIR) not in response.content.decode()
