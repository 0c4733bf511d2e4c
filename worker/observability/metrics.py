"""Prometheus metrics of the worker. Their names are part of the operations contract (docs/)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONSUMER_LAG = Gauge(
    "fielding_worker_consumer_lag",
    "Commands not yet committed by the group: end offset minus committed offset.",
    ["topic", "partition"],
)
CONSUMER_LAG_SECONDS = Gauge(
    "fielding_worker_consumer_lag_seconds",
    "Age of the oldest command fetched but not yet committed (0 when none waits).",
    ["topic", "partition"],
)
COMMANDS = Counter(
    "fielding_worker_commands",
    "Command results published, by command type and status.",
    ["type", "status"],
)
EVENTS = Counter("fielding_worker_events", "Events published, of every type.")
RUN_STATES = Counter(
    "fielding_worker_run_states", "Run states published on the states topic, one per change."
)
DLQ_RECORDS = Counter("fielding_worker_dlq_records", "Records copied to the DLQ.")
LATENCY = Histogram(
    "fielding_worker_command_latency_seconds",
    "From the command record's timestamp to its result being committed.",
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BATCH_SIZE = Histogram(
    "fielding_worker_batch_size",
    "Command records decided in one database transaction.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
)
STAGE_SECONDS = Histogram(
    "fielding_worker_stage_seconds",
    "How long a batch took in each stage: decide (intake, the database read and write) or "
    "publish (its Kafka transaction). A round lasts as long as the slower of the two.",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DECIDE_SECONDS = STAGE_SECONDS.labels(stage="decide")
PUBLISH_SECONDS = STAGE_SECONDS.labels(stage="publish")
RETRIES = Counter("fielding_worker_retries", "Retried batches, by kind of failure.", ["kind"])
REBALANCES = Counter(
    "fielding_worker_rebalances", "Partitions assigned to or revoked from this worker.", ["change"]
)
ASSIGNED_PARTITIONS = Gauge(
    "fielding_worker_assigned_partitions", "Command partitions this worker owns."
)
LAST_PROGRESS = Gauge(
    "fielding_worker_last_progress_timestamp_seconds",
    "Unix time of the last committed batch (or of the start, before any).",
)
OFFSET_RESETS = Counter(
    "fielding_worker_offset_resets",
    "Partitions whose committed offset was above the log end (the topic recreated?) and that "
    "were read again from their log start.",
)
HANGING_TRANSACTIONS = Gauge(
    "fielding_worker_hanging_transactions",
    "Transactions an output partition's leader holds open past the transaction timeout while "
    "their coordinator does not: read_committed readers of the partition wait there.",
    ["topic", "partition"],
)
HANGING_ABORTED = Counter(
    "fielding_worker_hanging_transactions_aborted",
    "Hanging transactions this worker aborted.",
    ["topic"],
)
PUBLISHED_AGAIN = Counter(
    "fielding_worker_records_published_again",
    "Records a hanging transaction's abort would have hidden, published again before it.",
    ["topic"],
)
HTTP_REQUESTS = Counter(
    "fielding_serve_requests",
    "HTTP requests answered by serve, by route template and status.",
    ["route", "status"],
)
HTTP_WAITING = Gauge(
    "fielding_serve_waiting_requests",
    "Requests waiting for their command's reply in this serve process.",
)
HTTP_REFUSED = Counter(
    "fielding_serve_refused",
    "Connections and requests serve refused or closed at its edge, by why: connections (503, "
    "every connection busy), evicted (waited longest for its headers when the cap was met), "
    "header_timeout, write_timeout (the client stopped reading), body_timeout, waiting (503, "
    "too many requests waiting for replies), read_limit (429 on a read), client_gone (the "
    "client left while its request waited).",
    ["reason"],
)
HTTP_REPLY_SECONDS = Histogram(
    "fielding_serve_reply_seconds",
    "From a change request's command sent to its reply read (504s not included).",
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
OVERDUE_RUNS = Gauge(
    "fielding_worker_overdue_runs",
    "Runs past their start (kind=start) or end (kind=end) time that have not moved, by how "
    "late at least (late=1m, 10m, 1h).",
    ["kind", "late"],
)
