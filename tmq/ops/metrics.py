"""Prometheus registries: one per service instance, never prometheus_client's global one."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, ProcessCollector

__all__ = ["new_registry"]


def new_registry() -> CollectorRegistry:
    """An empty registry of one service, carrying the process metrics
    (``process_cpu_seconds_total``, ``process_resident_memory_bytes``, ...)."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    return registry
