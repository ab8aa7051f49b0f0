import time

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
        "model_store": "ok", "engine": "ready"}}
    assert "secret-worker" not in response.content.decode() and str(settings.MODEL_STORE_DIR) not in response.content.decode()


def test_healthz_says_when_a_new_deployment_has_loaded(client, db, settings, project, tiny_version, alice,
                                                       make_user, monkeypatch, django_capture_on_commit_callbacks):
    """A web process loads a policy in the background as it is deployed; /healthz tells staff when it is ready."""
    from serving import runtime
    from serving.services import deployment_create

    client.force_login(make_user("operator", is_staff=True))

    monkeypatch.setitem(runtime._WARM, "on", True)  # what config/asgi.py's warm_start() turns on
    with django_capture_on_commit_callbacks(execute=True):
        deployment_create(project=project, policy=tiny_version, created_by=alice)
    deadline = time.monotonic() + 120
    while (engine := client.get("/healthz").json()["engine"])["models"][tiny_version.name]["state"] != "ready":
        assert engine["models"][tiny_version.name]["state"] == "loading" and not engine["ready"]
        assert time.monotonic() < deadline, "the model never finished loading"
        time.sleep(0.1)
    assert engine["ready"] is True and engine["models"][tiny_version.name]["running"] == 0


def test_healthz_says_a_deployed_model_is_not_loaded_in_a_process_that_did_not_warm_start(client, deployed, make_user):
    assert client.get("/healthz").json()["components"]["engine"] == "not ready"
    client.force_login(make_user("operator", is_staff=True))
    engine = client.get("/healthz").json()["engine"]
    assert engine["ready"] is False and engine["models"][deployed.policy.name] == {"state": "not loaded"}
