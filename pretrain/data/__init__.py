"""Training data: shard reading, the global sample order, mixtures and the per-rank loader."""
