"""The command the worker consumes from `fielding-run-commands`."""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict

from schemas.types import AccountId, CommandId, ETag, Timestamp, Ulid, version_of

COMPLETE_FIELDING_RUN = "complete_fielding_run"


class CompleteFieldingRun(BaseModel):
    """Complete a live or scheduled fielding run, closing its target group.

    Unknown extra fields are ignored, so producers can add fields before the worker knows them.
    """

    model_config = ConfigDict(
        strict=True, frozen=True, extra="ignore", title="complete_fielding_run"
    )

    type: Literal["complete_fielding_run"]
    command_id: CommandId
    account_id: AccountId
    project_id: Ulid
    target_group_id: Ulid
    fielding_run_id: Ulid
    if_match: ETag
    issued_at: Timestamp

    @property  # parsed per read: functools.cached_property (a lock per read in 3.11) saved nothing
    def expected_version(self) -> int:
        return version_of(self.if_match)

    def fingerprint(self) -> bytes:
        """What makes two commands with one `command_id` the same command.

        `issued_at` is left out: a retry of the same intent may carry a new timestamp.
        `W/"5"` and `"5"` are the same precondition.
        """
        canonical = "\x1f".join(
            (
                self.type,
                str(self.account_id),
                self.project_id,
                self.target_group_id,
                self.fielding_run_id,
                str(self.expected_version),
            )
        )
        return hashlib.sha256(canonical.encode()).digest()[:16]


Command = CompleteFieldingRun
COMMAND_TYPES: frozenset[str] = frozenset({COMPLETE_FIELDING_RUN})


def parse_command(value: bytes) -> Command:
    """The command in a record's value; raises pydantic's ValidationError."""
    return CompleteFieldingRun.model_validate_json(value)
