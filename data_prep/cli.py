"""What every command line here shares: help that shows real defaults, and one vocabulary
of flags whose old spellings keep working, with a deprecation note, for one release."""

from __future__ import annotations

import argparse
import sys

__all__ = ["RealDefaultsFormatter", "DeprecatedAlias", "add_flag"]


class RealDefaultsFormatter(argparse.HelpFormatter):
    """``(default: X)`` where X is a real default: not on required flags, switches or None."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.required or action.default in (None, argparse.SUPPRESS)
                or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
                or "default" in text):
            return text
        return f"{text} (default: %(default)s)"


class DeprecatedAlias(argparse.Action):
    """An old spelling of a flag: fills the new flag's value and says, once, to switch."""

    def __init__(self, option_strings: list[str], dest: str, *, new: str, **kwargs) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"{parser.prog}: warning: {option_string} is deprecated, use {self.new} "
              f"(the old spelling is accepted until the next release)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_flag(parser: argparse.ArgumentParser, flag: str, *, deprecated: tuple[str, ...] = (),
             required: bool = False, **kwargs) -> None:
    """Add ``flag`` and its ``deprecated`` old spellings (hidden from ``--help``).

    One vocabulary across the tools (``--data-path``, ``--seq-length``, ``--vocab-size``,
    as in the training config's ``data.path``); the old names keep working for a release.
    """
    dest = kwargs.pop("dest", flag.lstrip("-").replace("-", "_"))
    if not deprecated:
        parser.add_argument(flag, dest=dest, required=required, **kwargs)
        return
    # A required group: either spelling satisfies it, and giving both is an error.
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument(flag, dest=dest, **kwargs)
    alias_kwargs = {k: v for k, v in kwargs.items() if k in ("type", "nargs", "metavar")}
    for old in deprecated:
        group.add_argument(old, dest=dest, action=DeprecatedAlias, new=flag,
                           help=argparse.SUPPRESS, **alias_kwargs)
