"""Feature extractors: log-mel filterbanks for audio, face crops for video frames."""
