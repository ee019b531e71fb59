"""Generate a labelled synthetic audio-visual emotion corpus: media files and manifest.csv.

    avemo synth OUT_DIR [--clips N] [--seed S] [--secondary-share P] [--valid-share P]
                        [--test-share P] [--cue-gain G]

for example `avemo synth demo-work/corpus --clips 48 --seed 0`. OUT_DIR (a local folder) receives
media/ (H.264+AAC MP4, a few MP4 without audio, a few .m4a/.wav without video), corpus.json, and
manifest.csv with one row per labelled segment: uri (relative to the manifest's folder), start_s,
end_s, split (train/valid/test, speaker-disjoint), and one intensity per emotion on CMU-MOSEI's
0..3 scale (0: absent). Same N and S give the same manifest and the same decoded media. Which
emotion shows in which cue of which modality: avemo_core/synth/cues.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avemo_core.config import ConfigError
from avemo_core.synth import SynthConfig, write_corpus
from avemo_core.synth.encode import EncodeError
from jobs.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", metavar="OUT_DIR", help="local folder to write the corpus into")
    parser.add_argument(
        "--clips", type=int, default=SynthConfig.clips, metavar="N",
        help=f"labelled segments to make, about 2.5 per media file (default {SynthConfig.clips})",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=SynthConfig.seed, metavar="S", help="seed (default %(default)s)"
    )
    parser.add_argument(
        "--secondary-share", type=float, default=SynthConfig.secondary_share, metavar="P",
        help="chance that each other emotion joins a clip's leading one (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--cue-gain", type=float, default=SynthConfig.cue_gain, metavar="G",
        help="scale of every emotion's effect on the cues; > 1: easier (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--valid-share", type=float, default=SynthConfig.valid_share, metavar="P",
        help="share of speakers in the valid split (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--test-share", type=float, default=SynthConfig.test_share, metavar="P",
        help="share of speakers in the test split (default %(default)s)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if "://" in args.out_dir:
        raise UserError(f"OUT_DIR must be a local folder, got {args.out_dir!r}")
    if args.clips < 1:
        raise UserError(f"--clips must be >= 1, got {args.clips}")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    out = Path(args.out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"OUT_DIR {out} exists and is not a folder")
    try:
        config = SynthConfig(
            clips=args.clips,
            seed=args.seed,
            secondary_share=args.secondary_share,
            valid_share=args.valid_share,
            test_share=args.test_share,
            cue_gain=args.cue_gain,
        )
        summary = write_corpus(out, config, progress=lambda line: print(line, file=sys.stderr))
    except (ConfigError, EncodeError) as err:
        raise UserError(str(err)) from err
    except PermissionError as err:
        raise UserError(f"cannot write to {out}: {err.strerror}") from err
    splits = ", ".join(f"{n} {split}" for split, n in summary.clips_per_split.items())
    print(
        f"wrote {summary.clips} clips ({splits}) in {summary.files} media files "
        f"({summary.audio_only} audio-only, {summary.video_only} video-only, "
        f"{summary.media_s / 60:.1f} min of media) in {summary.elapsed_s:.1f} s\n"
        f"manifest: {summary.manifest}"
    )
    return 0
