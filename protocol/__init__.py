"""tmq.protocol: the Kafka wire protocol, pure (no Twisted, no I/O).

Bytes in, messages out, and back: framing, request/response headers, one ``construct``
declaration per API message with version-gated fields, RecordBatch v2 and the error codes.
"""
