"""Load a Hugging Face ``tokenizers`` JSON and check it can be sharded, before any work starts."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

from tokenizers import Tokenizer

__all__ = ["DEFAULT_EOD_TOKEN", "DTYPES", "TokenizerError", "TokenizerSpec", "load_tokenizer"]

DEFAULT_EOD_TOKEN = "<|endoftext|>"
#: dtype name -> number of distinct ids it stores.
DTYPES = {"uint16": 1 << 16, "uint32": 1 << 32}


class TokenizerError(ValueError):
    """The tokenizer cannot be used as asked; the message says what to change."""


@dataclass(frozen=True, slots=True)
class TokenizerSpec:
    """What the manifest records about the tokenizer (``manifest["tokenizer"]``) plus the dtype.

    Attributes:
        path: The tokenizer.json path as given.
        sha256: sha256 of the file's bytes; part of the shard fingerprint.
        vocab_size: Largest token id + 1 (including added tokens).
        eod_id: Id appended after every document.
        eod_token: The EOD token's text.
        dtype: ``uint16`` or ``uint32``: the on-disk id type.
    """

    path: str
    sha256: str
    vocab_size: int
    eod_id: int
    eod_token: str
    dtype: str

    def manifest_entry(self) -> dict:
        """The ``manifest["tokenizer"]`` object (dtype lives at the top level)."""
        entry = asdict(self)
        del entry["dtype"]
        return entry


def load_tokenizer(
    path: str, eod_token: str = DEFAULT_EOD_TOKEN, dtype: str = "auto"
) -> tuple[Tokenizer, TokenizerSpec]:
    """Load ``path`` and validate the EOD token and the dtype.

    Args:
        path: A tokenizer.json written by ``tokenizers`` (e.g. by ``train_tokenizer.py``).
        eod_token: Token appended after each document; must be in the vocabulary.
        dtype: ``auto`` (uint16 when every id fits, else uint32), ``uint16`` or ``uint32``.

    Raises:
        TokenizerError: unreadable file, missing EOD token, or ids that do not fit ``dtype``.
    """
    if dtype != "auto" and dtype not in DTYPES:
        raise TokenizerError(f"--dtype {dtype!r} is not one of auto, {', '.join(DTYPES)}")
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        tok = Tokenizer.from_str(raw.decode("utf-8"))
    except OSError as exc:
        raise TokenizerError(f"cannot read --tokenizer {path!r}: {exc.strerror}") from exc
    except Exception as exc:  # noqa: BLE001 - tokenizers raises a bare Exception on bad JSON
        raise TokenizerError(
            f"--tokenizer {path!r} is not a tokenizers JSON file ({exc}); "
            "train one with `python data_prep/train_tokenizer.py`"
        ) from exc
    vocab = tok.get_vocab(with_added_tokens=True)
    vocab_size = max(vocab.values()) + 1 if vocab else 0
    eod_id = tok.token_to_id(eod_token)
    if eod_id is None:
        raise TokenizerError(
            f"EOD token {eod_token!r} is not in the vocabulary of --tokenizer {path!r}; "
            "pass the tokenizer's own end-of-document token with --eod-token, or retrain with "
            "`python data_prep/train_tokenizer.py` (it adds <|endoftext|>)"
        )
    if dtype == "auto":
        dtype = "uint16" if vocab_size <= DTYPES["uint16"] else "uint32"
    elif vocab_size > DTYPES[dtype]:
        raise TokenizerError(
            f"--tokenizer {path!r} has vocab_size={vocab_size}, which does not fit --dtype {dtype} "
            f"(at most {DTYPES[dtype]} ids); use --dtype uint32 or --dtype auto"
        )
    spec = TokenizerSpec(
        path=path,
        sha256=hashlib.sha256(raw).hexdigest(),
        vocab_size=vocab_size,
        eod_id=eod_id,
        eod_token=eod_token,
        dtype=dtype,
    )
    return tok, spec
