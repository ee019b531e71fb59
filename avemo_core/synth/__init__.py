"""Synthetic labelled audio-visual emotion corpora: drawn faces and voices, encoded by ffmpeg.

`write_corpus` makes the demo's and the experiments' data; `write_media` a few unlabelled files for
labelling demos. The emotion -> cue table is in `cues.py`.
"""

from avemo_core.synth.config import SynthConfig
from avemo_core.synth.corpus import MANIFEST_COLUMNS, CorpusSummary, write_corpus, write_media

__all__ = ["MANIFEST_COLUMNS", "CorpusSummary", "SynthConfig", "write_corpus", "write_media"]
