"""The records of `fielding-run-states`, a compacted topic keyed by `fielding_run_id`: after
each change of a run, the run as it then is. Read from the beginning, the last record of each
key is that run's current state."""

from __future__ import annotations

from pydantic import ConfigDict

from schemas.api import FieldingRunItem
from schemas.types import AccountId, Ulid


class FieldingRunState(FieldingRunItem):
    """A fielding run as it is after a change: what `GET .../fielding-runs/{id}` returns, with
    the ids that address it. `version` orders the records of one run."""

    model_config = ConfigDict(title="fielding_run_state", frozen=True)

    account_id: AccountId
    project_id: Ulid
    target_group_id: Ulid
