"""A shard server: one process per device, holding its weight and KV shards.

Rank 0 also runs the scheduler (the resident decode loop) and the coordinator's Session; the
other ranks follow rank 0's step broadcasts. See services/shard/main.py for the process's life.
"""
