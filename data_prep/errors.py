"""The input error shared by the readers of text and of Megatron indexed datasets."""

__all__ = ["InputError"]


class InputError(ValueError):
    """An ``--input`` that names nothing readable; raised before any work starts."""
