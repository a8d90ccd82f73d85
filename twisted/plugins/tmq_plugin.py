"""twistd plugin: ``twistd -n tmq-broker --data-dir DIR ...`` (options in ``tmq.tap``)."""

from twisted.application.service import ServiceMaker

tmq_broker = ServiceMaker("tmq broker", "tmq.tap", "a Kafka-compatible log broker", "tmq-broker")
