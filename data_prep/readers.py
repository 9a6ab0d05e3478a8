"""Read documents from one piece of one input file, counting everything that is not one.

A *piece* is a file or a slice of one (see ``inputs.plan_units``):

- ``jsonl``: bytes ``[start, stop)``; a line belongs to the piece that holds its first byte,
  so neighbouring pieces never both read (or both miss) a line.
- ``jsonl.zst``: zstd frames cannot be entered in the middle without a seek table (the
  Pile's files have none), so a big ``.zst`` file is split by *decompressed line number*:
  piece ``k`` of ``K`` keeps lines with ``line_no % K == k``. Each piece decompresses the
  whole stream (zstd decodes at >1 GB/s, ~100x faster than BPE tokenizes) and only parses
  and tokenizes its own lines, so one huge file is spread over ``K`` ranks.
- ``txt``: the whole file is one document.
- ``parquet``: row groups ``[start, stop)``.

``iter_piece`` yields ``(text, None, None)`` for a document and ``(None, reason, where)`` for
a skipped record, so the caller can count ``read == kept + skipped`` exactly. Nothing here
raises for bad data; every failure maps to one of ``SKIP_REASONS``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import zstandard

__all__ = [
    "SKIP_REASONS",
    "TOKEN_KINDS",
    "Piece",
    "Record",
    "file_kind",
    "iter_piece",
    "file_size",
]

#: Every reason a record can be skipped for, as it appears in manifest["documents"]["skipped"].
SKIP_REASONS: dict[str, str] = {
    "malformed_json": "a jsonl line that is not valid JSON",
    "not_an_object": "a jsonl line whose JSON value is not an object",
    "invalid_utf8": "bytes that are not UTF-8 (or a JSON string with a lone surrogate)",
    "missing_text_key": "a JSON object / parquet table without the text key",
    "non_string_text": "the text field is not a string (number, null, list, ...)",
    "empty_text": "a document that is empty or only whitespace",
    "blank_line": "an empty line inside a jsonl file",
    "truncated_zst": "a .zst stream that ends in the middle of a frame (counted once per file)",
    "corrupt_zst": "a .zst stream the decoder rejects (counted once per file)",
    "unreadable_file": "a file that cannot be opened or parsed at all (counted once per file)",
    "unsupported_file": "a file found in an input directory with an extension we do not read",
    "empty_document": "an imported (.bin/.idx) document holding no token besides EOD",
}

#: One yielded item: (text, None, None) for a document, (None, reason, "file:line") for a skip.
Record = tuple[str | None, str | None, str | None]

_KINDS = (".jsonl.zst", ".jsonl", ".txt", ".parquet", ".idx")
#: Kinds whose documents are token ids (``indexed_input``), not text.
TOKEN_KINDS = ("indexed",)
_READ_CHUNK = 1 << 20


def file_kind(path: str) -> str | None:
    """Return ``"jsonl.zst" | "jsonl" | "txt" | "parquet" | "indexed"`` (a Megatron ``.idx``,
    its ``.bin`` beside it) for a path, or None if unsupported."""
    for suffix in _KINDS:
        if path.endswith(suffix):
            return "indexed" if suffix == ".idx" else suffix[1:]
    return None


@dataclass(frozen=True, slots=True)
class Piece:
    """One slice of one input file; the unit of reading.

    Attributes:
        path: The file, as discovered (absolute).
        kind: ``file_kind(path)``, or ``"unsupported"``.
        start: jsonl: first byte; jsonl.zst: stride index k; parquet: first row group;
            indexed: first document.
        stop: jsonl: end byte (exclusive); jsonl.zst: stride count K; parquet: end row group;
            indexed: end document (exclusive).
        est_bytes: Estimated (decompressed) bytes this piece reads, for load balancing.
    """

    path: str
    kind: str
    start: int = 0
    stop: int = 0
    est_bytes: int = 0


def iter_piece(piece: Piece, text_key: str = "text") -> Iterator[Record]:
    """Yield every record of ``piece``: documents and counted skips; never raises on bad data."""
    if piece.kind == "jsonl":
        yield from _iter_jsonl_range(piece, text_key)
    elif piece.kind == "jsonl.zst":
        yield from _iter_zst_stride(piece, text_key)
    elif piece.kind == "txt":
        yield from _iter_txt(piece)
    elif piece.kind == "parquet":
        yield from _iter_parquet(piece, text_key)
    else:
        yield None, "unsupported_file", piece.path


def _parse_json_line(line: bytes, text_key: str) -> tuple[str | None, str | None]:
    """Turn one jsonl line into (text, None) or (None, reason)."""
    body = line.rstrip(b"\r\n")
    if not body.strip():
        return None, "blank_line"
    try:
        decoded = body.decode("utf-8")
    except UnicodeDecodeError:
        return None, "invalid_utf8"
    try:
        obj = json.loads(decoded)
    except ValueError:
        return None, "malformed_json"
    if not isinstance(obj, dict):
        return None, "not_an_object"
    if text_key not in obj:
        return None, "missing_text_key"
    return _check_text(obj[text_key])


def _check_text(text: object) -> tuple[str | None, str | None]:
    """Validate a text value from any reader."""
    if not isinstance(text, str):
        return None, "non_string_text"
    if not text.strip():
        return None, "empty_text"
    try:
        # JSON "\ud800" escapes decode to lone surrogates that no tokenizer can encode.
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None, "invalid_utf8"
    return text, None


class _LineNumbers:
    """Absolute line numbers for a jsonl piece that starts mid-file, computed only on demand.

    Counting the newlines before ``start`` reads the file prefix, so it is done once per piece
    and only when a skip needs an example location (skips are rare).
    """

    def __init__(self, path: str, start: int) -> None:
        self._path, self._start, self._base = path, start, None if start else 0

    def where(self, rel_line: int) -> str:
        if self._base is None:
            self._base = 0
            try:
                with open(self._path, "rb") as fh:
                    left = self._start
                    while left > 0:
                        chunk = fh.read(min(_READ_CHUNK, left))
                        if not chunk:
                            break
                        self._base += chunk.count(b"\n")
                        left -= len(chunk)
            except OSError:
                pass
        return f"{self._path}:{self._base + rel_line + 1}"


def _iter_jsonl_range(piece: Piece, text_key: str) -> Iterator[Record]:
    try:
        fh = open(piece.path, "rb")  # noqa: SIM115 - closed in finally; generator lifetime
    except OSError:
        yield None, "unreadable_file", piece.path
        return
    try:
        pos = piece.start
        if pos > 0:
            # Start at the first line that *begins* inside [start, stop).
            fh.seek(pos - 1)
            if fh.read(1) != b"\n":
                pos += len(fh.readline())
        lines = _LineNumbers(piece.path, pos)
        rel = 0
        while pos < piece.stop:
            line = fh.readline()
            if not line:
                break
            pos += len(line)
            text, reason = _parse_json_line(line, text_key)
            if reason is None:
                yield text, None, None
            else:
                yield None, reason, lines.where(rel)
            rel += 1
    except OSError:
        yield None, "unreadable_file", piece.path
    finally:
        fh.close()


class _ZstTruncated(Exception):
    """The compressed stream ended inside a frame."""


def _zst_chunks(fh) -> Iterator[bytes]:
    """Decompress a (possibly multi-frame) zstd stream, raising on truncation or corruption.

    ``ZstdDecompressor.stream_reader`` returns EOF quietly on a truncated stream, which would
    silently drop the tail; a decompressobj per frame lets us check ``eof`` ourselves.
    """
    dctx = zstandard.ZstdDecompressor()
    dobj = dctx.decompressobj()
    in_frame = False
    while True:
        data = fh.read(_READ_CHUNK)
        if not data:
            break
        while data:
            in_frame = True
            out = dobj.decompress(data)
            if out:
                yield out
            if dobj.eof:
                in_frame = False
                data = dobj.unused_data
                dobj = dctx.decompressobj()
            else:
                data = b""
    if in_frame:
        raise _ZstTruncated


def _iter_zst_stride(piece: Piece, text_key: str) -> Iterator[Record]:
    k, n_strides = piece.start, max(piece.stop, 1)
    try:
        fh = open(piece.path, "rb")  # noqa: SIM115
    except OSError:
        # Stride 0 speaks for the whole file so the count does not depend on K.
        if k == 0:
            yield None, "unreadable_file", piece.path
        return
    line_no = 0
    rest = b""
    try:
        try:
            for chunk in _zst_chunks(fh):
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()
                for line in lines:
                    if line_no % n_strides == k:
                        text, reason = _parse_json_line(line, text_key)
                        if reason is None:
                            yield text, None, None
                        else:
                            yield None, reason, f"{piece.path}:{line_no + 1}"
                    line_no += 1
        except _ZstTruncated:
            # The partial last line (if any) and the rest of the stream are lost: one record.
            if k == 0:
                yield None, "truncated_zst", f"{piece.path}:{line_no + 1}"
            return
        except zstandard.ZstdError:
            if k == 0:
                yield None, "corrupt_zst", f"{piece.path}:{line_no + 1}"
            return
        except OSError:
            if k == 0:
                yield None, "unreadable_file", piece.path
            return
        if rest and line_no % n_strides == k:  # last line without a trailing newline
            text, reason = _parse_json_line(rest, text_key)
            if reason is None:
                yield text, None, None
            else:
                yield None, reason, f"{piece.path}:{line_no + 1}"
    finally:
        fh.close()


def _iter_txt(piece: Piece) -> Iterator[Record]:
    try:
        with open(piece.path, "rb") as fh:
            raw = fh.read()
    except OSError:
        yield None, "unreadable_file", piece.path
        return
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        yield None, "invalid_utf8", piece.path
        return
    text, reason = _check_text(decoded)
    yield (text, None, None) if reason is None else (None, reason, piece.path)


def _iter_parquet(piece: Piece, text_key: str) -> Iterator[Record]:
    import pyarrow.parquet as pq  # heavy import, only when parquet input exists

    try:
        pf = pq.ParquetFile(piece.path)
    except Exception:  # noqa: BLE001 - pyarrow raises many types for a bad file
        if piece.start == 0:
            yield None, "unreadable_file", piece.path
        return
    names = pf.schema_arrow.names
    row = sum(pf.metadata.row_group(i).num_rows for i in range(piece.start))
    for group in range(piece.start, min(piece.stop, pf.num_row_groups)):
        n_rows = pf.metadata.row_group(group).num_rows
        if text_key not in names:
            for i in range(n_rows):
                yield None, "missing_text_key", f"{piece.path}:{row + i + 1}"
            row += n_rows
            continue
        try:
            values = pf.read_row_group(group, columns=[text_key]).column(0).to_pylist()
        except Exception:  # noqa: BLE001 - corrupt page / invalid UTF-8 in a string column
            for i in range(n_rows):
                yield None, "unreadable_file", f"{piece.path}:{row + i + 1}"
            row += n_rows
            continue
        for i, value in enumerate(values):
            text, reason = _check_text(value)
            yield (
                (text, None, None)
                if reason is None
                else (None, reason, f"{piece.path}:{row + i + 1}")
            )
        row += n_rows


def file_size(path: str) -> int:
    """Size in bytes, or 0 when the file cannot be stat'ed (the reader then counts it)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
