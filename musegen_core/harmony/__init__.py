"""Harmony without models: voice-leading statistics of four-part writing (`voice_leading`) and a rule-based folk
chord-and-bass accompaniment for a melody (`accompaniment`)."""
