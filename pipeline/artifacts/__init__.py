"""What jobs leave for later jobs: the model bundle, and the prepared training shards (their
writer and reader side by side)."""
