"""Train the emotion model on clip shards with Ray Train; track in MLflow; optionally register it.

    avemo train DATA [--mode colearn|av|audio|visual] [--workers N] [--gpu] [--epochs E]
                     [--members K] [--cross-fit] [--mlflow-uri URI] [--register NAME] [--resume]

Examples:

    avemo train shards/ --workers 2 --epochs 10 --register avemo-emotion
    avemo train shards/ --mode av --model-size tiny --epochs 3 --run-name av-baseline
    avemo train shards/ --run-name av-baseline --resume      # after a crash: same name, storage
    avemo train shards/ --members 3 --cross-fit   # members train on valid speakers too
    RAY_ADDRESS=ray://head:10001 avemo train s3://bucket/shards --workers 8 --gpu \\
        --storage s3://bucket/runs --mlflow-uri http://mlflow:5000 --register avemo-emotion

A local Ray cluster starts unless RAY_ADDRESS names one. Checkpoints live in --storage under
--run-name; MLflow defaults to ./mlflow.db (MLFLOW_TRACKING_URI or --mlflow-uri override it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avemo_core.colearning import MODES, CoLearningConfig
from avemo_core.config import ConfigError
from avemo_core.model import MODEL_SIZES, ModelConfig
from avemo_core.training import LR_SCHEDULES, TrainConfig
from jobs.errors import UserError
from pipelines import tracking
from pipelines.train import registry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="clip shards: a local directory or s3:// prefix")
    parser.add_argument("--mode", choices=MODES, default="colearn", help="what to train")
    parser.add_argument("--workers", type=int, default=1, help="Ray Train workers")
    parser.add_argument("--gpu", action="store_true", help="one GPU per worker, bf16 autocast")
    recipe = TrainConfig()  # the flags' defaults are the library's recipe
    parser.add_argument(
        "--epochs", type=int, default=recipe.epochs, help="passes over the train split"
    )
    parser.add_argument(
        "--batch-size", type=int, default=recipe.batch_size, help="clips per step per worker"
    )
    parser.add_argument("--lr", type=float, default=recipe.lr, help="AdamW peak learning rate")
    parser.add_argument(
        "--weight-decay", type=float, default=recipe.weight_decay, help="AdamW weight decay"
    )
    parser.add_argument(
        "--warmup-epochs", type=int, default=recipe.warmup_epochs, help="linear warm-up epochs"
    )
    parser.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default=recipe.lr_schedule,
        help="after warm-up: cosine decay to 0, or constant",
    )
    parser.add_argument(
        "--time-masks", type=int, default=recipe.time_masks, help="SpecAugment time spans per clip"
    )
    parser.add_argument(
        "--freq-masks", type=int, default=recipe.freq_masks, help="SpecAugment mel bands per clip"
    )
    parser.add_argument("--seed", type=int, default=0, help="weights and shuffling seed")
    parser.add_argument(
        "--model-size",
        choices=MODEL_SIZES,
        default="small",
        help="named model size (small: the real-speech recipe)",
    )
    parser.add_argument(
        "--members",
        type=int,
        help="networks trained side by side, probabilities averaged (default: the size's; small 3)",
    )
    parser.add_argument(
        "--cross-fit",
        action="store_true",
        help="members also train on the valid split, each less one fold of its speakers, and are "
        "validated out-of-fold (needs --members >= 2)",
    )
    parser.add_argument("--transfer-to-single", type=float, default=1.0, help="KD av -> a, v")
    parser.add_argument("--transfer-to-av", type=float, default=0.5, help="KD a, v -> av")
    parser.add_argument("--temperature", type=float, default=2.0, help="KD temperature")
    parser.add_argument("--modality-dropout", type=float, default=0.0, help="av-mode ablation")
    parser.add_argument("--run-name", help="default: avemo-MODE-TIMESTAMP (with --resume: latest)")
    parser.add_argument(
        "--storage", default="avemo-runs", help="Ray Train storage (default ./avemo-runs)"
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --storage")
    parser.add_argument("--max-failures", type=int, default=2, help="worker-group restarts")
    parser.add_argument(
        "--no-cache-data",
        action="store_true",
        help="stream the splits from Parquet every epoch (data larger than Ray's object store)",
    )
    parser.add_argument("--keep-checkpoints", type=int, default=2, help="best N kept")
    parser.add_argument(
        "--mlflow-uri", help="tracking URI (default: MLFLOW_TRACKING_URI, ./mlflow.db)"
    )
    parser.add_argument("--experiment", default="avemo", help="MLflow experiment")
    parser.add_argument("--register", metavar="NAME", help="register the best checkpoint as NAME")


def _storage(value: str) -> str:
    return value if "://" in value else str(Path(value).resolve())


def run(args: argparse.Namespace) -> int:
    from pipelines.train.job import TrainJobError, run_name, run_train_job
    from pipelines.train.run import RunSettings

    storage = _storage(args.storage)
    try:
        members = {} if args.members is None else {"members": args.members}
        model_config = ModelConfig.named(args.model_size, **members)
        train_config = TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            weight_decay=args.weight_decay,
            warmup_epochs=args.warmup_epochs,
            lr_schedule=args.lr_schedule,
            time_masks=args.time_masks,
            freq_masks=args.freq_masks,
            seed=args.seed,
            cross_fit=args.cross_fit,
        )
        colearning = CoLearningConfig(
            mode=args.mode,
            transfer_to_single=args.transfer_to_single,
            transfer_to_av=args.transfer_to_av,
            temperature=args.temperature,
            modality_dropout=args.modality_dropout,
        )
        settings = RunSettings(
            data_uri=args.data,
            run_name=run_name(args.mode, storage, args.run_name, args.resume),
            storage_uri=storage,
            workers=args.workers,
            use_gpu=args.gpu,
            max_failures=args.max_failures,
            keep_checkpoints=args.keep_checkpoints,
            tracking_uri=tracking.resolve_tracking_uri(args.mlflow_uri),
            experiment=args.experiment,
            resume=args.resume,
            cache_data=not args.no_cache_data,
        )
        result = run_train_job(settings, model_config, train_config, colearning, args.register)
    except (ConfigError, TrainJobError) as err:
        raise UserError(str(err)) from None
    if result.registration is not None:
        registered = result.registration
        print(f"registered {registered.name} v{registered.version} as @{registry.CANDIDATE}")
        print(registered.gate)
    return 0
