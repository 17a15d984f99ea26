"""SingleFlight: one execution per key, shared results and errors, cancellation safety."""

from __future__ import annotations

import asyncio

import pytest

from cache import SingleFlight


async def test_200_concurrent_calls_run_once_and_share_the_result() -> None:
    flights: SingleFlight[str] = SingleFlight()
    calls = 0
    gate = asyncio.Event()

    async def work() -> object:
        nonlocal calls
        calls += 1
        await gate.wait()
        return object()

    waiters = [asyncio.create_task(flights.do("k", work)) for _ in range(200)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*waiters)
    assert calls == 1
    assert all(r is results[0] for r in results)
    assert not flights.in_flight("k")


async def test_different_keys_do_not_share() -> None:
    flights: SingleFlight[str] = SingleFlight()
    a, b = await asyncio.gather(
        flights.do("a", lambda: asyncio.sleep(0, "A")),
        flights.do("b", lambda: asyncio.sleep(0, "B")),
    )
    assert (a, b) == ("A", "B")


async def test_exception_reaches_every_waiter_and_next_call_retries() -> None:
    flights: SingleFlight[str] = SingleFlight()
    calls = 0

    async def boom() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        raise RuntimeError("backend down")

    results = await asyncio.gather(
        *(flights.do("k", boom) for _ in range(5)), return_exceptions=True
    )
    assert calls == 1
    assert all(isinstance(r, RuntimeError) for r in results)

    async def ok() -> int:
        return 7

    assert await flights.do("k", ok) == 7


async def test_do_shared_tells_who_joined() -> None:
    flights: SingleFlight[str] = SingleFlight()
    gate = asyncio.Event()

    async def work() -> str:
        await gate.wait()
        return "v"

    leader = asyncio.create_task(flights.do_shared("k", work))
    await asyncio.sleep(0)
    follower = asyncio.create_task(flights.do_shared("k", work))
    await asyncio.sleep(0)
    gate.set()
    assert await leader == ("v", False)
    assert await follower == ("v", True)


async def test_cancelling_a_waiter_never_cancels_the_shared_work() -> None:
    flights: SingleFlight[str] = SingleFlight()
    gate = asyncio.Event()
    finished = False

    async def work() -> str:
        nonlocal finished
        await gate.wait()
        finished = True
        return "done"

    first = asyncio.create_task(flights.do("k", work))  # the one that started the work
    second = asyncio.create_task(flights.do("k", work))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    gate.set()
    assert await second == "done"
    assert finished


async def test_work_completes_even_if_every_waiter_leaves() -> None:
    flights: SingleFlight[str] = SingleFlight()
    gate = asyncio.Event()
    done = asyncio.Event()

    async def work() -> None:
        await gate.wait()
        done.set()
        raise RuntimeError("nobody listens")

    waiter = asyncio.create_task(flights.do("k", work))
    await asyncio.sleep(0)
    waiter.cancel()
    gate.set()
    await asyncio.wait_for(done.wait(), 1)
    await asyncio.sleep(0)
    assert not flights.in_flight("k")
