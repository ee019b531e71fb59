"""The labelling job: media or clip shards in, label shards out (Ray Data)."""
