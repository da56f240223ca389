"""Putting a build in the repository: Parquet shards, the card's YAML, staging and the atomic swap."""
