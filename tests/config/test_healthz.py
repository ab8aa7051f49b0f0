from django.utils import timezone

from training.models import ModelVersion, WorkerHeartbeat


def _register_base(settings):
    folder = settings.MODEL_STORE_DIR / "base"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    ModelVersion.objects.create(name="base", kind="policy", path="base")


def test_healthz_is_503_and_names_each_missing_piece(client, db):
    response = client.get("/healthz")
    assert response.status_code == 503
    problems = response.json()["problems"]
    assert "no live worker consumes queue 'training'" in problems
    assert "no live worker consumes queue 'sampling'" in problems
    assert any("base model is not provisioned" in p for p in problems)


def test_healthz_is_200_with_a_live_worker_per_queue_and_the_base_model(client, db, settings):
    _register_base(settings)
    WorkerHeartbeat.objects.create(
        hostname="w@host", queues=["training", "sampling", "default"], last_seen=timezone.now()
    )
    response = client.get("/healthz")
    assert response.status_code == 200, response.json()
    assert response.json()["workers"]["training"] == ["w@host"]


def test_a_worker_that_stopped_beating_does_not_count(client, db, settings):
    _register_base(settings)
    WorkerHeartbeat.objects.create(
        hostname="old@host", queues=["training", "sampling", "default"],
        last_seen=timezone.now() - timezone.timedelta(minutes=10),
    )
    response = client.get("/healthz")
    assert response.status_code == 503
    assert "no live worker consumes queue 'default'" in response.json()["problems"]
