"""tts service."""
