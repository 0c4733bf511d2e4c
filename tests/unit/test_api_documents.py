"""The API documents in docs/ are generated from the routes that serve them: a route changed
without `make schemas` fails here, before a client generated from the stale document does."""

from __future__ import annotations

from worker.adapters.http.documents import openapi_document
from worker.entrypoints.api_documents import stale_files

# The public API's operation ids (its OpenAPI document, the Fielding and Fielding (Batch) tags).
PUBLIC_OPERATIONS = {
    "get_fielding_runs_by_target_group_id",
    "get_fielding_run",
    "update_fielding_run",
    "complete_fielding_run",
    "launch_now_fielding_run",
    "pause_fielding_run",
    "resume_fielding_run",
    "relaunch_fielding_run",
    "create_launch_fielding_run_from_draft_job",
    "get_launch_fielding_run_from_draft_job",
    "create_schedule_fielding_run_from_draft_job",
    "get_schedule_fielding_run_from_draft_job",
    *(
        f"{verb}_bulk_{action}_target_groups_job"
        for verb in ("create", "get")
        for action in ("complete", "launch", "pause", "resume", "relaunch")
    ),
}


def test_the_checked_in_documents_match_the_routes() -> None:
    assert stale_files() == [], "run: make schemas"


def test_every_operation_of_the_public_api_is_served_with_its_id() -> None:
    document = openapi_document()
    operations = [op for path in document["paths"].values() for op in path.values()]
    public = {op["operationId"] for op in operations if not op.get("x-fielding-extension")}
    assert public == PUBLIC_OPERATIONS


def test_this_services_extensions_are_marked_as_such() -> None:
    document = openapi_document()
    extensions = {
        name: op["operationId"]
        for name, path in document["paths"].items()
        for op in path.values()
        if op.get("x-fielding-extension")
    }
    assert extensions == {
        "/v1/demand/accounts/{account_id}/command-results/{command_id}": "get_command_result"
    }


def test_a_bad_request_is_documented_as_400_and_422_only_as_an_invalid_state() -> None:
    document = openapi_document()
    complete = next(
        path["post"] for name, path in document["paths"].items() if name.endswith("/complete")
    )
    assert complete["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ApiError"
    )
    assert "HTTPValidationError" not in str(document)
    assert set(complete["responses"]) == {
        "204",
        "400",
        "401",
        "403",
        "404",
        "412",
        "422",
        "429",
        "500",
        "504",
    }
    assert {"ETag", "traceparent", "tracestate"} <= set(complete["responses"]["204"]["headers"])
