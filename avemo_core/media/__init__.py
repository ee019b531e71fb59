"""Media files to clip features with ffmpeg: probe streams, stream-decode windows, build clip rows.

Plain library code (no Ray): `pipelines/extract/run.py` runs it per file on Ray Data workers.
"""
