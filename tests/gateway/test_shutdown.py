"""Shutting a gateway down while a background poll is reading the store.

A poll's blocking read runs in a thread, which cancelling its task cannot stop. The lifespan used
to close the store at once: the SQLite connection was closed under the thread still reading it,
which crashed a CI run (a segmentation fault in the erasure poll's query). Now the shutdown waits
for that read to return before it closes the store."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from tests.conftest import SECRET


@pytest.mark.parametrize("poll", ["erasures", "models"])
async def test_shutdown_waits_for_a_poll_reading_the_store(tmp_path: Path, poll: str) -> None:
    app = create_app(
        data_dir=tmp_path / "var",
        jwt_secret=SECRET,
        encoder="hashing",
        erasure_poll_s=0.05,
        model_poll_s=0.05,
    )
    reading = threading.Event()
    outcome: dict[str, Any] = {}
    async with app.router.lifespan_context(app):
        services = app.state.services
        store = services.store
        real_close = store.close

        def close() -> None:
            outcome["closed_before_the_read_returned"] = "read" not in outcome
            real_close()

        store.close = close  # type: ignore[method-assign]
        # The erasure poll reads the erasure log; the model poll looks for a new index version,
        # then reads the items updated since it (as catch_up_items does).
        target, name = (
            (services.privacy, "sync_erasures")
            if poll == "erasures"
            else (services.content, "load_latest")
        )
        real = getattr(target, name)

        def slow_read(*args: Any) -> Any:
            reading.set()
            time.sleep(0.4)  # the lifespan shuts down meanwhile
            try:
                result = real(*args)
                store.items_updated_since(0.0)
            except Exception as exc:
                outcome["error"] = repr(exc)
                raise
            outcome["read"] = True
            return result

        setattr(target, name, slow_read)
        while not reading.is_set():  # a poll is in its thread, about to read
            await asyncio.sleep(0.01)
    assert outcome == {"read": True, "closed_before_the_read_returned": False}
