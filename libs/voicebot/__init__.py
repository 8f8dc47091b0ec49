"""Shared library of the voicebot platform: bus, events, config, observability, audio."""
