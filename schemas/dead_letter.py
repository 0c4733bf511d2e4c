"""What `fielding-run-commands-dlq` holds besides byte-for-byte copies: the stub that stands
for a record that cannot be copied (its headers cannot be written back, or it would not fit)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class OriginalRecord(BaseModel):
    model_config = ConfigDict(frozen=True, title="original_record")

    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


class DeadLetterStub(BaseModel):
    """The reason, where the record was, and a SHA-256 of its value; never its content."""

    model_config = ConfigDict(frozen=True, title="dead_letter_stub")

    reason: str
    original: OriginalRecord
    value_sha256: str | None = Field(description="hex SHA-256 of the value, when it was read")
    value_bytes: int | None = Field(ge=0, description="the value's length, when it was read")
