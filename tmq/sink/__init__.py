"""The PostgreSQL sink: consumes telemetry records and writes them exactly once (DESIGN §6)."""
