"""Face detection (detectors registered by name) and one-face tracking across a clip's frames."""
