"""REST API (Klein) over the telemetry database. Filled in by the API issue."""
