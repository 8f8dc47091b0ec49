"""asr service."""
