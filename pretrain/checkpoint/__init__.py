"""Checkpoints: the commit protocol, verification on resume, and the start-up checks of the save dir."""
