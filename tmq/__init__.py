"""tmq: a GPU telemetry pipeline built around a replicated, Kafka-compatible log broker."""
