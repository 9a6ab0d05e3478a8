"""The LEV design study: the resumable runner, the gap-trend fit and the study's report."""

from pretrain.study.runner import main

__all__ = ["main"]
