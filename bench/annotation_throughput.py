"""Annotation throughput: next-task + submit through our REST API, against a bare ORM insert.

For N prompts, simulated labelers (distinct users, token auth, no think time) take turns calling
``GET /api/projects/<slug>/tasks/next/`` then ``POST .../tasks/<id>/demonstration/`` through DRF's
test client (the whole Django/DRF stack, no socket). Peers in the same run, on the same database:

- ``service``: ``task_next`` + ``demonstration_submit`` called directly (the queue's own cost:
  lease look-up, claim of the first open prompt under ``select_for_update(skip_locked)``, lease
  upsert and slot count, idempotent insert, review sampling), no HTTP layer;
- ``bare``: ``Demonstration.objects.create`` per item, the least any label store can do.

Prints p50/p99 per call, labels/s and the ratios. Label Studio or Argilla are not installable here,
so the bare insert is the floor we compare against. Runs on the embedded SQLite database in a
throwaway data dir unless ``DATABASE_URL`` points elsewhere.

With ``--concurrent N`` it also runs N labelers at once, each a thread with its own HTTP client, against
an in-process live server (or ``--url`` of a running server on the same ``DATABASE_URL``, e.g.
PostgreSQL) for up to ``--seconds``, on a project of ``--concurrent-items`` prompts, and reports
latency, labels/s, overlaps and lost submissions, and the machine's CPU per request. With no think
time (the default) N callers keep N requests in flight, so the run is CPU-bound and its latency is
N x CPU per request / cores (Little's law): the line after the CPU figure says what that bound is.
``--think-ms`` gives each labeler a pause between items, as people take, for latency at a real load.

Run: .venv/bin/python bench/annotation_throughput.py [--items 300] [--labelers 4] [--labels-per-item 1]
     [--concurrent 50 --seconds 20 [--think-ms 0] [--concurrent-only] [--url http://127.0.0.1:PORT [--server-pid PID]]]

A data dir can be reused: each run makes a new project (``http``, ``http-2``...) and reuses the labelers.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TUNELOOP_EMBEDDED", "1")
os.environ.setdefault("TUNELOOP_DATA_DIR", tempfile.mkdtemp(prefix="tuneloop-bench-"))
os.environ.setdefault("TUNELOOP_API_RATE", "1000000/min")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from annotation.models import Demonstration, Project, Prompt, Role  # noqa: E402
from annotation.prompt_text import normalized_hash  # noqa: E402
from annotation.queue import demonstration_submit, task_next  # noqa: E402
from annotation.services import membership_set, project_create  # noqa: E402
from serving.keys import api_key_create  # noqa: E402


def percentiles(ms: list[float]) -> tuple[float, float]:
    ordered = sorted(ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def make_project(slug: str, items: int, labelers: int, labels_per_item: int):
    """A new project ``slug`` (``slug-2``, ``-3``... when a run before this one left it in the data dir)
    with ``items`` prompts; the labelers ``slug-labeler<i>`` are reused from earlier runs."""
    User = get_user_model()
    base, n = slug, 1
    while Project.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    manager, _ = User.objects.get_or_create(username=f"{base}-manager")
    project = project_create(name=slug, slug=slug, created_by=manager, labels_per_item=labels_per_item,
                             review_rate=0.2)
    users = []
    for i in range(labelers):
        user, _ = User.objects.get_or_create(username=f"{base}-labeler{i}")
        membership_set(project=project, user=user, role=Role.LABELER)
        users.append(user)
    prompts = []
    for i in range(items):
        messages = [{"role": "user", "content": f"{slug} question {i}: explain something"}]
        prompts.append(Prompt(project=project, messages=messages, normalized_hash=normalized_hash(messages)))
    Prompt.objects.bulk_create(prompts)
    return project, users


def run_api(items: int, labelers: int, labels_per_item: int) -> dict:
    project, users = make_project("api", items, labelers, labels_per_item)
    clients = []
    for user in users:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(user=user, name='bench')[1]}")
        clients.append(client)
    base = f"/api/projects/{project.slug}"
    next_ms, submit_ms, done = [], [], 0
    active = list(range(labelers))
    start = time.perf_counter()
    while active:
        for i in list(active):
            t0 = time.perf_counter()
            response = clients[i].get(f"{base}/tasks/next/?kind=demonstration")
            next_ms.append((time.perf_counter() - t0) * 1000)
            if response.status_code == 204:
                active.remove(i)
                continue
            assert response.status_code == 200, response.content
            task_id = response.json()["id"]
            t0 = time.perf_counter()
            submitted = clients[i].post(f"{base}/tasks/{task_id}/demonstration/", {"content": "An answer."},
                                        format="json")
            submit_ms.append((time.perf_counter() - t0) * 1000)
            assert submitted.status_code == 201, submitted.content
            done += 1
    elapsed = time.perf_counter() - start
    return {"next": next_ms, "submit": submit_ms, "done": done, "seconds": elapsed, "project": project}


def run_service(items: int, labelers: int, labels_per_item: int) -> dict:
    project, users = make_project("svc", items, labelers, labels_per_item)
    next_ms, submit_ms, done = [], [], 0
    active = list(users)
    start = time.perf_counter()
    while active:
        for user in list(active):
            t0 = time.perf_counter()
            task = task_next(project=project, user=user, kind="demonstration")
            next_ms.append((time.perf_counter() - t0) * 1000)
            if task is None:
                active.remove(user)
                continue
            t0 = time.perf_counter()
            demonstration_submit(assignment=task, user=user, content="An answer.")
            submit_ms.append((time.perf_counter() - t0) * 1000)
            done += 1
    return {"next": next_ms, "submit": submit_ms, "done": done, "seconds": time.perf_counter() - start,
            "project": project}


def run_bare(items: int) -> dict:
    project, users = make_project("bare", items, 1, 1)
    create_ms = []
    start = time.perf_counter()
    for prompt in Prompt.objects.filter(project=project):
        t0 = time.perf_counter()
        Demonstration.objects.create(prompt=prompt, author=users[0], content="An answer.")
        create_ms.append((time.perf_counter() - t0) * 1000)
    return {"create": create_ms, "done": len(create_ms), "seconds": time.perf_counter() - start}


def check(result: dict, labels_per_item: int, items: int) -> str:
    """Overlaps (an item labelled more than labels_per_item times, or twice by one labeler), lost submissions
    (acknowledged with 201 but not in the database) and, when the queue was drained, unfilled slots."""
    per_prompt = {}
    for prompt_id, author_id in Demonstration.objects.filter(prompt__project=result["project"]).values_list(
            "prompt_id", "author_id"):
        per_prompt.setdefault(prompt_id, []).append(author_id)
    overlaps = sum(max(0, len(a) - labels_per_item) + len(a) - len(set(a)) for a in per_prompt.values())
    lost = result["done"] - sum(len(a) for a in per_prompt.values())
    line = f"overlaps={overlaps} lost_submissions={lost}"
    if result.get("drained", True):
        unfilled = sum(labels_per_item - len(a) for a in per_prompt.values()) + labels_per_item * (
            items - len(per_prompt))
        line += f" unfilled_slots={unfilled}"
    return line


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine so far (all cores; Linux ``/proc/stat``), 0 elsewhere."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    ticks = [int(v) for v in fields]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int | None) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far (Linux ``/proc``), 0 when unknown."""
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_concurrent(items: int, labelers: int, labels_per_item: int, seconds: float, url: str | None,
                   think_ms: float = 0.0, server_pid: int | None = None) -> dict:
    """``labelers`` threads, each a distinct user with its own HTTP client: next, submit, then (with
    ``think_ms``) a pause drawn from an exponential distribution of that mean, as a person would take."""
    import random
    import threading

    import httpx

    project, users = make_project("http", items, labelers, labels_per_item)
    server = None
    if url is None:
        from django.conf import settings
        from django.test.testcases import LiveServerThread, _StaticFilesHandler

        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "127.0.0.1"]
        server = LiveServerThread("127.0.0.1", _StaticFilesHandler, port=0)
        server.daemon = True
        server.start()
        server.is_ready.wait()
        if server.error:
            raise server.error
        url = f"http://127.0.0.1:{server.port}"
    tokens = [api_key_create(user=user, name="bench")[1] for user in users]
    base = f"{url}/api/projects/{project.slug}"
    next_ms, submit_ms, errors, done = [], [], [], [0]
    lock = threading.Lock()
    deadline = float("inf")
    drained = [0]

    def labeler(token: str, seed: int) -> None:
        pause = random.Random(seed)
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            client.get(f"{base}/")  # untimed: the connection, and each server worker's first request
            started.wait()
            if think_ms:  # start as people do, not all in the same millisecond
                time.sleep(pause.expovariate(1000 / think_ms))
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                response = client.get(f"{base}/tasks/next/?kind=demonstration")
                took = (time.perf_counter() - t0) * 1000
                if response.status_code == 204:
                    with lock:
                        next_ms.append(took)
                        drained[0] += 1
                    return
                if response.status_code != 200:
                    errors.append(f"next {response.status_code}")
                    continue
                task_id = response.json()["id"]
                t0 = time.perf_counter()
                submitted = client.post(f"{base}/tasks/{task_id}/demonstration/", json={"content": "An answer."})
                with lock:
                    next_ms.append(took)
                    submit_ms.append((time.perf_counter() - t0) * 1000)
                    if submitted.status_code == 201:
                        done[0] += 1
                    else:
                        errors.append(f"submit {submitted.status_code}")
                if think_ms:
                    time.sleep(min(pause.expovariate(1000 / think_ms), max(0.0, deadline - time.perf_counter())))

    started = threading.Event()
    threads = [threading.Thread(target=labeler, args=(token, i)) for i, token in enumerate(tokens)]
    for thread in threads:
        thread.start()
    time.sleep(2)  # let every labeler warm up, then start the clock for all of them at once
    deadline = time.perf_counter() + seconds
    cpu0, own0, start = machine_cpu_seconds(), time.process_time(), time.perf_counter()
    server0 = process_cpu_seconds(server_pid)
    started.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    cpu, own = machine_cpu_seconds() - cpu0, time.process_time() - own0
    server_cpu = process_cpu_seconds(server_pid) - server0
    if server is not None:
        server.terminate()
    return {"next": next_ms, "submit": submit_ms, "done": done[0], "seconds": elapsed, "project": project,
            "errors": errors, "drained": drained[0] == labelers, "machine_cpu": cpu, "client_cpu": own,
            "server_cpu": server_cpu}


def report_concurrent(http: dict, labelers: int, think_ms: float, labels_per_item: int, items: int) -> None:
    """Latency, throughput, correctness, and where the CPU went (with the bound it puts on latency)."""
    for name, ms in (("http next-task", http["next"]), ("http submit", http["submit"])):
        p50, p99 = percentiles(ms)
        print(f"{name:<20} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  (n={len(ms)}, {labelers} labelers, "
              f"think {think_ms:g} ms)")
    print(f"http     {http['done'] / http['seconds']:8.1f} labels/s  errors={len(http['errors'])} "
          f"{sorted(set(http['errors']))[:5]}")
    print(f"http     {check(http, labels_per_item, items)}")
    requests = len(http["next"]) + len(http["submit"])
    if requests and http["machine_cpu"]:
        cores = os.cpu_count() or 1
        per_request = http["machine_cpu"] / requests * 1000
        print(f"cpu      machine {http['machine_cpu'] / http['seconds'] / cores:.0%} busy of {cores} cores; "
              f"{per_request:.2f} ms of CPU per request (server + database + this client), "
              f"{http['client_cpu'] / requests * 1000:.2f} ms of it in this client")
        if http["server_cpu"]:
            print(f"cpu      the server process: {http['server_cpu'] / requests * 1000:.2f} ms of CPU per request, "
                  f"{http['server_cpu'] / http['seconds']:.0%} of one core")
        if not think_ms:
            # Little's law: with no think time, N callers each wait N x (CPU per request) / cores on average.
            print(f"cpu      so with {labelers} callers and no think time the mean latency cannot drop below "
                  f"{labelers * per_request / cores:.0f} ms on this machine")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--labelers", type=int, default=4)
    parser.add_argument("--labels-per-item", type=int, default=1)
    parser.add_argument("--concurrent", type=int, default=0,
                        help="also run this many labelers at once over HTTP (threads, a live server)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the concurrent run lasts at most")
    parser.add_argument("--concurrent-items", type=int, default=20000,
                        help="prompts in the concurrent run's project (enough that it does not drain)")
    parser.add_argument("--think-ms", type=float, default=0.0,
                        help="mean pause of each labeler between submit and next (exponential); 0 = none")
    parser.add_argument("--concurrent-only", action="store_true", help="skip the sequential api/service/bare runs")
    parser.add_argument("--url", default=None,
                        help="a running server on the same DATABASE_URL (default: an in-process live server)")
    parser.add_argument("--server-pid", type=int, default=None,
                        help="the --url server's process id, to report its own CPU per request")
    args = parser.parse_args()
    setup_test_environment()
    call_command("migrate", verbosity=0)
    from django.db import connection

    print(f"database={connection.vendor} items={args.items} labelers={args.labelers} "
          f"labels_per_item={args.labels_per_item}")
    if not args.concurrent_only:
        sequential(args.items, args.labelers, args.labels_per_item)
    if args.concurrent:
        http = run_concurrent(args.concurrent_items, args.concurrent, args.labels_per_item, args.seconds, args.url,
                              args.think_ms, args.server_pid)
        report_concurrent(http, args.concurrent, args.think_ms, args.labels_per_item, args.concurrent_items)


def sequential(items: int, labelers: int, labels_per_item: int) -> None:
    """One caller at a time: the API, the service layer under it and a bare insert, on the same database."""
    api = run_api(items, labelers, labels_per_item)
    service = run_service(items, labelers, labels_per_item)
    bare = run_bare(items * labels_per_item)
    rows = [("api next-task", api["next"]), ("api submit", api["submit"]),
            ("service task_next", service["next"]), ("service submit", service["submit"]),
            ("bare ORM insert", bare["create"])]
    for name, ms in rows:
        p50, p99 = percentiles(ms)
        print(f"{name:<20} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  (n={len(ms)})")
    for name, result in (("api", api), ("service", service), ("bare", bare)):
        print(f"{name:<8} {result['done'] / result['seconds']:8.1f} labels/s")
    print(f"api      {check(api, labels_per_item, items)}")
    print(f"service  {check(service, labels_per_item, items)}")
    bare_p50 = percentiles(bare["create"])[0]
    api_pair = percentiles(api["next"])[0] + percentiles(api["submit"])[0]
    service_pair = percentiles(service["next"])[0] + percentiles(service["submit"])[0]
    print(f"ratio api (next+submit p50) / bare insert p50 = {api_pair / bare_p50:.1f}x")
    print(f"ratio service (next+submit p50) / bare insert p50 = {service_pair / bare_p50:.1f}x")
    print(f"ratio labels/s bare / api = {bare['done'] / bare['seconds'] / (api['done'] / api['seconds']):.1f}x")

if __name__ == "__main__":
    main()
