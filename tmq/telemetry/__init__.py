"""GPU telemetry: the DCGM sample model, its sources (CSV, dcgm-exporter scrapes, synthetic
data) and the msgpack record codec shared by the producer and the sink (DESIGN §6)."""
