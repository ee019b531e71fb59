"""Ray wrappers around `avemo_core`, one package per job; jobs/ puts a command line on each.

    pipelines/extract/   media in, clip shards out (Ray Data): run (plan and run the job), media
                         (one task's files), shards (the shard writer and store), sources
                         (listings and manifests), compact (shards rewritten as few large files)
    pipelines/label/     media or clip shards in, label shards out (Ray Data): run, labeller (the
                         inference actor), media (extraction inside the stream), store, summary
    pipelines/train/     clip shards in, a registered model out (Ray Train): job (the `avemo
                         train` driver), run (the Ray Train loop), datasets (shards as Ray
                         datasets), evaluation, registry, pyfunc_model

What more than one job uses stays at this level: `storage` (the one way to open a local path or
an s3:// URI), `ray_session` (the one way to start or join Ray), `tracking` (MLflow) and
`model_uri` (a model reference to a local checkpoint). Imports run jobs -> pipelines ->
avemo_core; benchmarks and the experiment behind the results page live in `bench/`.
"""
