"""tmq.groups: the group coordinator of the classic Kafka consumer-group protocol (DESIGN §1).

``group`` holds one group's membership (``Group``, ``Member``, ``GroupState``): members,
generations, the leader, the protocol the members agree on. ``coordinator`` drives every group
of this broker through JoinGroup, SyncGroup, Heartbeat and LeaveGroup with session and rebalance
timeouts on an injected clock (static members included), and validates OffsetCommit against
the generation; ``answers`` holds what it answers. All are sans-IO: the broker's request
handlers call them and encode the results.
"""
