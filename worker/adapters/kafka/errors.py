"""What the Kafka adapter raises when it must give its partitions back."""

from __future__ import annotations


class PartitionLost(Exception):
    """This worker can no longer publish for the partition safely (fenced, or a commit whose
    outcome is unknown). The consumer must rejoin the group; the committed offset then tells
    what is done."""
