"""The telemetry sample: one DCGM field of one GPU at one instant.

A sample is what one CSV row, or one line of a dcgm-exporter scrape, says. It travels as one
Kafka record whose key is the GPU UUID (so one GPU's samples keep their order inside a
partition) and whose value is ``tmq.telemetry.codec``'s msgpack map of these fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Sample"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One DCGM field value.

    :ivar time_us: when the value was observed, in microseconds since the Unix epoch (UTC).
    :ivar metric: the DCGM field name, e.g. ``DCGM_FI_DEV_GPU_UTIL``.
    :ivar gpu_index: the GPU's index on its host (DCGM's ``gpu`` label).
    :ivar device: the device node name, e.g. ``nvidia0``.
    :ivar uuid: the GPU UUID, e.g. ``GPU-5fd4f087-86f3-7a43-b711-4771313afc50``; never empty.
    :ivar model: the GPU model name (``modelName``).
    :ivar hostname: the host the GPU is in.
    :ivar container: the Kubernetes container using the GPU, ``""`` when none.
    :ivar pod: the Kubernetes pod using the GPU, ``""`` when none.
    :ivar namespace: the Kubernetes namespace of that pod, ``""`` when none.
    :ivar value: the field's value; ``None`` when DCGM reported one of its blank sentinels
        (no value, not a number to chart).
    :ivar labels: every exporter label of the sample (``labels_raw``), parsed, quotes removed;
        e.g. ``DCGM_FI_DRIVER_VERSION`` gives the driver version.
    """

    time_us: int
    metric: str
    gpu_index: int
    device: str
    uuid: str
    model: str
    hostname: str
    container: str
    pod: str
    namespace: str
    value: float | None
    labels: Mapping[str, str]

    @property
    def driver(self) -> str:
        """The driver version from the labels, ``""`` when the exporter did not say."""
        return self.labels.get("DCGM_FI_DRIVER_VERSION", "")
