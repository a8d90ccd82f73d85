"""What operators see of a tmq process: Prometheus metrics, health endpoints, log lines.

``tmq.ops.http`` serves ``/metrics``, ``/healthz`` and ``/readyz``; ``tmq.ops.metrics`` makes
a service's own registry; ``tmq.ops.logs`` makes the text or JSON log observer. Every service
(broker, sink, producer, API) uses them; they use no other tmq package.
"""
