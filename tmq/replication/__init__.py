"""tmq.replication: leader/follower replication of partitions (DESIGN §4).

``follower`` decides how far a follower truncates before it follows (OffsetForLeaderEpoch,
KIP-101/279); ``leader`` tracks a leader's followers: their log end offsets, the high
watermark, and which replicas must leave or may join the ISR. Both are sans-IO.
"""
