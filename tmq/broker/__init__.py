"""tmq.broker: the broker service — request handling, partitions, replica management."""
