"""Corpus building (cached, parallel), n-gram baselines and training of the melody models."""
