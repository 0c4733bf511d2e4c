"""The HTTP API's edge, in process, before anything reaches Kafka or Postgres: what it refuses
and how (the public API's error body, every time), with stand-ins for the store and the
worker. The whole path is tested against the real services in tests/integration."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from schemas.command import Command
from schemas.types import new_ulid
from tests.support.commands import SECRET, SYSTEM_SECRET, system_headers, token
from worker.adapters.http.answers import ApiContext
from worker.adapters.http.app import create_app
from worker.adapters.http.limits import MAX_BODY_BYTES
from worker.adapters.kafka.request_reply import Reply
from worker.service.auth import TokenVerifier

PROJECT = "/v1/demand/accounts/101/projects/01BTGNYV6HRNK8K8VKZASZCFP0"
GROUP = PROJECT + "/target-groups/01BTGNYV6HRNK8K8VKZASZCFP1"
RUN = GROUP + "/fielding-runs/01BTGNYV6HRNK8K8VKZASZCFP2"
HEADERS = {"Authorization": f"Bearer {token([101])}", "Cint-API-Version": "2025-12-18"}


class DownStore:
    """A pool whose database is away."""

    async def fetchrow(self, *args: Any) -> Any:
        raise ConnectionRefusedError("the database is away")

    async def fetch(self, *args: Any) -> Any:
        raise ConnectionRefusedError("the database is away")


class Worker:
    """Answers every command with `result`, as the worker's reply would."""

    def __init__(self) -> None:
        self.sent: list[tuple[Command, list[tuple[str, bytes]]]] = []
        self.result: dict[str, Any] | None = None

    async def send(
        self, command: Command, headers: list[tuple[str, bytes]], deadline: float
    ) -> Reply | None:
        self.sent.append((command, headers))
        if self.result is None:
            return None
        trace = [("traceparent", f"00-{'c' * 32}-{'d' * 16}-01".encode())]
        return Reply(json.dumps(self.result).encode(), trace, self.result)


@pytest.fixture
def worker() -> Worker:
    return Worker()


@pytest.fixture
async def client(worker: Worker) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ApiContext(TokenVerifier(SECRET), worker, DownStore(), 1.0))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


def assert_api_error(response: httpx.Response, status: int, object_name: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["object"] == object_name and body["detail"] and "id" in body
    assert "traceparent" in response.headers
    return body


async def test_a_read_while_the_database_is_away_is_a_500_with_the_api_body(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(RUN, headers=HEADERS)
    assert_api_error(response, 500, "unexpected_internal_error")


@pytest.mark.parametrize("account", ["+101", "1_01", "101.0", "٣", "0", "4294967296"])
async def test_an_account_id_is_decimal_digits_only(
    client: httpx.AsyncClient, account: str
) -> None:
    response = await client.get(
        RUN.replace("/accounts/101/", f"/accounts/{account}/"), headers=HEADERS
    )
    body = assert_api_error(response, 400, "bad_request_error")
    assert [p["name"] for p in body["invalid_params"]] == ["account_id"]


@pytest.mark.parametrize("job_id", ["%00", "a" * 26, "x"])
async def test_a_job_id_is_a_ulid(client: httpx.AsyncClient, job_id: str) -> None:
    response = await client.get(
        GROUP + f"/fielding-run-jobs/launch-from-draft/{job_id}", headers=HEADERS
    )
    assert_api_error(response, 400, "bad_request_error")


async def test_a_body_over_the_limit_is_refused_before_it_is_parsed(
    client: httpx.AsyncClient, worker: Worker
) -> None:
    padding = "x" * MAX_BODY_BYTES
    body = f'{{"start_fielding_at": "2030-01-01T00:00:00Z", "end_fielding_at": "2030-02-01T00:00:00Z", "pad": "{padding}"}}'
    response = await client.put(
        RUN,
        content=body,
        headers={**HEADERS, "If-Match": 'W/"1"', "content-type": "application/json"},
    )
    assert_api_error(response, 413, "bad_request_error")
    assert worker.sent == []


async def test_a_trailing_slash_is_not_redirected(client: httpx.AsyncClient) -> None:
    response = await client.post(RUN + "/complete/", headers={"Host": "evil.example"})
    assert "location" not in response.headers
    assert_api_error(response, 404, "not_found_error")


async def test_a_body_that_is_not_json_names_the_body(client: httpx.AsyncClient) -> None:
    response = await client.put(
        RUN,
        content=b"{",
        headers={**HEADERS, "If-Match": 'W/"1"', "content-type": "application/json"},
    )
    body = assert_api_error(response, 400, "bad_request_error")
    assert [p["name"] for p in body["invalid_params"]] == ["body"]


async def test_the_workers_400_names_the_header_the_caller_sent(
    client: httpx.AsyncClient, worker: Worker
) -> None:
    worker.result = {
        "command_id": "k-1",
        "account_id": 101,
        "status": 400,
        "error": {
            "id": "e",
            "object": "bad_request_error",
            "detail": "this command_id was already used for a different command",
            "invalid_params": [{"name": "command_id", "reason": "already used"}],
        },
    }
    response = await client.post(
        RUN + "/complete", headers={**HEADERS, "If-Match": 'W/"1"', "idempotency-key": "k-1"}
    )
    body = assert_api_error(response, 400, "bad_request_error")
    assert [p["name"] for p in body["invalid_params"]] == ["idempotency-key"]


async def test_no_result_in_time_is_a_504_naming_the_key(
    client: httpx.AsyncClient, worker: Worker
) -> None:
    response = await client.post(RUN + "/complete", headers={**HEADERS, "If-Match": 'W/"1"'})
    assert response.status_code == 504
    [(command, _)] = worker.sent
    assert response.headers["idempotency-key"] == command.command_id
    assert len(command.command_id) == 26, "a fresh id per request without a key"


async def test_the_command_carries_the_callers_token_and_trace(
    client: httpx.AsyncClient, worker: Worker
) -> None:
    traceparent = f"00-{'a' * 32}-{'b' * 16}-01"
    await client.post(
        RUN + "/complete",
        headers={**HEADERS, "If-Match": 'W/"1"', "traceparent": traceparent, "tracestate": "k=v"},
    )
    [(command, headers)] = worker.sent
    assert dict(headers) == {
        "authorization": HEADERS["Authorization"].encode(),
        "traceparent": traceparent.encode(),
        "tracestate": b"k=v",
    }
    assert command.fielding_run_id == RUN.rsplit("/", 1)[1] and command.expected_version == 1  # type: ignore[union-attr]
    assert new_ulid() != command.command_id


@pytest.mark.parametrize("verifier", ["serve's", "one holding the system key"])
async def test_the_system_actor_is_401_on_every_route_whatever_verifier_serve_has(
    worker: Worker, verifier: str
) -> None:
    held = SYSTEM_SECRET if verifier != "serve's" else None
    app = create_app(
        ApiContext(TokenVerifier(SECRET, system_secret=held), worker, DownStore(), 1.0)  # type: ignore[arg-type]
    )
    [(_, authorization)] = system_headers()
    system = {"Authorization": authorization.decode(), "Cint-API-Version": "2025-12-18"}
    other_account = RUN.replace("/accounts/101/", "/accounts/555/")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        for response in (
            await client.get(other_account, headers=system),
            await client.get(GROUP + "/fielding-runs", headers=system),
            await client.post(other_account + "/complete", headers={**system, "If-Match": 'W/"1"'}),
        ):
            assert_api_error(response, 401, "authorization_error")
    assert worker.sent == [], "nothing reaches the commands topic"


@pytest.mark.parametrize(
    ("where", "value", "name"),
    [
        ("account", "+101", "account_id"),
        ("account", "0", "account_id"),
        ("account", "2147483648", "account_id"),
        ("account", "٣", "account_id"),
        ("project", "01btgnyv6hrnk8k8vkzascfp0", "project_id"),
        ("project", "01BTGNYV6HRNK8K8VKZASZCFP", "project_id"),
        ("If-Match", "five", "If-Match"),
        ("If-Match", 'W/"01"', "If-Match"),
        ("If-Match", "", "If-Match"),
        ("Cint-API-Version", "2025-02-30", "Cint-API-Version"),
        ("Cint-API-Version", "2025-12-1", "Cint-API-Version"),
        ("idempotency-key", "", "idempotency-key"),
        ("idempotency-key", "k" * 256, "idempotency-key"),
    ],
)
async def test_a_run_action_with_one_bad_parameter_is_a_400_naming_it_and_sends_nothing(
    client: httpx.AsyncClient, worker: Worker, where: str, value: str, name: str
) -> None:
    worker.result = {"command_id": "k", "account_id": 101, "status": 204}
    path, headers = RUN + "/complete", {**HEADERS, "If-Match": 'W/"1"'}
    if where == "account":
        path = path.replace("/accounts/101/", f"/accounts/{value}/")
    elif where == "project":
        path = path.replace("01BTGNYV6HRNK8K8VKZASZCFP0", value)
    else:
        headers[where] = value
    response = await client.post(path, headers=headers)
    body = assert_api_error(response, 400, "bad_request_error")
    assert [p["name"] for p in body["invalid_params"]] == [name]
    assert worker.sent == []


async def test_a_run_action_judges_the_token_before_its_parameters(
    client: httpx.AsyncClient, worker: Worker
) -> None:
    response = await client.post(
        RUN + "/complete", headers={"Cint-API-Version": "2025-12-18", "If-Match": "five"}
    )
    assert_api_error(response, 401, "authorization_error")
    assert worker.sent == []


async def test_a_run_action_reads_its_headers_in_any_case_and_the_first_of_a_repeated_one(
    client: httpx.AsyncClient, worker: Worker
) -> None:
    worker.result = {"command_id": "k-1", "account_id": 101, "status": 204, "etag": 'W/"2"'}
    headers = [
        ("authorization", HEADERS["Authorization"]),
        ("CINT-API-VERSION", "2025-12-18"),
        ("if-match", 'W/"1"'),
        ("if-match", 'W/"7"'),
        ("Idempotency-Key", "k-1"),
    ]
    response = await client.post(RUN + "/complete", headers=headers)
    assert response.status_code == 204 and response.headers["ETag"] == 'W/"2"'
    [(command, _)] = worker.sent
    assert (command.command_id, command.expected_version) == ("k-1", 1)  # type: ignore[union-attr]
