"""The extraction job: media in, clip shards out (Ray tasks)."""
