"""An ASGI web process runs a few requests at a time, the others wait in arrival order; calls that wait
on the model are never held behind labelers (config/request_slots.py)."""

import asyncio

from config.request_slots import RequestSlots

NEXT_TASK = "/api/projects/p/tasks/next/"


def test_requests_beyond_the_limit_wait_and_start_in_arrival_order(settings):
    settings.WEB_THREADS = 2
    slots, started, running, peak = RequestSlots(), [], [0], [0]

    async def request(i: int) -> None:
        async with slots.held(NEXT_TASK):
            started.append(i)
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            await asyncio.sleep(0)  # others get the loop meanwhile
            await asyncio.sleep(0)
            running[0] -= 1

    async def main() -> None:
        await asyncio.gather(*(request(i) for i in range(8)))

    asyncio.run(main())
    assert peak[0] == 2
    assert started == list(range(8))


def test_model_calls_the_chat_and_health_checks_are_not_held_behind_busy_slots(settings):
    settings.WEB_THREADS = 1
    slots, done = RequestSlots(), []

    async def main() -> None:
        release = asyncio.Event()

        async def busy() -> None:
            async with slots.held(NEXT_TASK):
                await release.wait()

        async def call(path: str) -> None:
            async with slots.held(path):
                done.append(path)

        holder = asyncio.create_task(busy())
        await asyncio.sleep(0)
        waiting = asyncio.create_task(call("/api/projects/p/tasks/7/demonstration/"))
        await call("/v1/chat/completions")
        await call("/projects/p/chat/send")
        await call("/healthz")
        assert done == ["/v1/chat/completions", "/projects/p/chat/send", "/healthz"]  # the submit still waits
        release.set()
        await asyncio.gather(holder, waiting)

    asyncio.run(main())
    assert done[-1] == "/api/projects/p/tasks/7/demonstration/"
