"""What every data tool's command line shares: help that shows real defaults."""

from __future__ import annotations

import argparse

__all__ = ["RealDefaultsFormatter"]


class RealDefaultsFormatter(argparse.HelpFormatter):
    """``(default: X)`` where X is a real default: not on required flags, switches or None."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.required or action.default in (None, argparse.SUPPRESS)
                or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
                or "default" in text):
            return text
        return f"{text} (default: %(default)s)"
