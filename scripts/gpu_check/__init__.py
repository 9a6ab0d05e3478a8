"""One-shot check of the CUDA path on a GPU host available for a few minutes.

    bash scripts/gpu_bundle.sh                      # here (network): the wheels the host lacks
    bash scripts/gpu_check.sh                       # there: installs them to a temp dir, `run`
    GPU_CHECK_DRY_RUN=1 bash scripts/gpu_check.sh   # CPU, tiny shapes, bf16, gloo (the tests)

It has to work the first time, so every part runs in its own process under its own time
limit, and the JSON says pass / fail / skipped with a reason for each. One module per part:

    plan.py         the parts, their time caps, the dry run's shapes
    runner.py       one deadline, child processes killed on time, the JSON rewritten per part
    check.py        ``run``: the parts in order, and when one is skipped
    bundle.py       ``bundle-check``: can the host install the wheel bundle?
    environment.py  nvidia-smi and the probe's verdict; what rules the GPU parts out
    probe.py        ``env``: imports, packages (packages.py), all-reduce, bf16 matmul ceiling
    throughput.py   1.2B lev / tied throughput (micro-batch halved on OOM), lev_vs_tied
    measure.py      ``throughput``: the timed optimizer steps, in the worker process
    peaks.py        dense bf16 peak per GPU model, MFU against it and the matmul ceiling
    shards.py       ``data``: corpus -> tokenizer -> shards
    resume.py       ``train_resume``: bf16 train -> save -> resume -> continue, bitwise
    evaluate.py     ``evaluate``: pretrain.evaluate on the small run's checkpoint
    report.py       the closing table
    cli.py          the command line (``python scripts/gpu_check --help``)

Nothing here runs at import time; ``__main__.py`` is the entry point.
"""
