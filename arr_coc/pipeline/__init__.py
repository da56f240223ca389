"""One build, shard by shard: which images, their records, their bytes, their rows, and what was skipped."""
