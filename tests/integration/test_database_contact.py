"""How a worker meets Postgres at start: settings that can never work stop it with a clear
error; a database that is merely away does not (its batches wait for it)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.support.processes import free_port
from worker.adapters.postgres.pool import DatabaseMisconfigured, create_pool, first_contact

pytestmark = pytest.mark.integration


def with_netloc(url: str, netloc: str) -> str:
    return urlunsplit(urlsplit(url)._replace(netloc=netloc))


async def test_a_wrong_password_stops_the_worker_with_a_clear_error(database_url: str) -> None:
    parts = urlsplit(database_url)
    pool = await create_pool(
        with_netloc(database_url, f"{parts.username}:wrong@{parts.hostname}:{parts.port}")
    )
    try:
        with pytest.raises(DatabaseMisconfigured, match="password"):
            await first_contact(pool)
    finally:
        await pool.close()


async def test_a_database_that_is_not_there_yet_is_waited_for(database_url: str) -> None:
    parts = urlsplit(database_url)
    away = with_netloc(database_url, f"{parts.username}:x@127.0.0.1:{free_port()}")
    pool = await create_pool(away)  # no connection is made here
    try:
        await first_contact(pool)  # warns and returns
    finally:
        await pool.close()
