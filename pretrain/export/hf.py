"""Export a checkpoint as a Hugging Face ``LlamaForCausalLM`` (lev, tied or untied).

``python -m pretrain.export_hf --checkpoint DIR --output HF_DIR [--tokenizer FILE]``

LEV is a deterministic function of the token id, so after training it *materialises*: it
is evaluated in fp32 for every id into an ordinary ``V x d`` input table, and a LEV model
becomes a standard untied Llama that transformers, lm-evaluation-harness, vLLM and the
llama.cpp converters load with no custom code. The mapping from megatron-core's GPT:

* ``linear_qkv`` holds, per query group, the group's query heads then one key and one
  value head: split into ``q_proj`` / ``k_proj`` / ``v_proj``;
* ``linear_fc1`` holds SwiGLU's gate then up (per TP rank): ``gate_proj`` / ``up_proj``;
* RMSNorm weights (local spec: ``input_layernorm`` / ``pre_mlp_layernorm``; Transformer
  Engine: the ``layer_norm_weight`` fused into ``linear_qkv`` / ``linear_fc1``);
* RoPE: megatron-core's default rotate-half convention is Llama's; ``rope_theta`` is
  ``model.rotary_base``; ``tied`` exports with ``tie_word_embeddings``.

Runs under the training launchers like ``pretrain.evaluate``: one process per TP rank of
the checkpoint (any ZeRO 0-2 checkpoint; ZeRO-3 at the DP size it was saved with). Rank 0
writes safetensors, ``config.json``, ``generation_config.json``, the tokenizer (the exact
file the shards were made with, checked by sha256) and a model card, then loads the
export back and compares its logits with the checkpoint's on a fixed batch (fp32).
Exit codes: 0 done, 2 bad input (message names it), 1 verification failed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pretrain.export.inference import EvaluationError
from pretrain.runtime.logs import setup_logging

# torch loads inside the functions that compute: importing it takes seconds, which
# `--help` and a refused --output should not pay for.
if TYPE_CHECKING:
    import torch

__all__ = ["ExportError", "export", "hf_state_dict", "main", "materialise_input_table"]

log = logging.getLogger("pretrain.export_hf")

#: largest |logit| difference between the checkpoint and its export that passes (fp32)
TOLERANCE = 1e-4


class ExportError(EvaluationError):
    """The checkpoint, tokenizer or output cannot be exported as asked."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def find_tokenizer(meta: dict[str, Any], override: str | None) -> tuple[Path, dict[str, Any]]:
    """The exact tokenizer file the checkpoint's shards were made with, and its record.

    The record is ``meta.json["tokenizer"]`` (written at every save), else the manifest of
    the training ``data.path``. The file is ``override``, else the record's path (as given,
    then beside the manifest); its sha256 must equal the record's.

    Raises:
        ExportError: no record, no file, or a file whose sha256 differs (names both).
    """
    record = meta.get("tokenizer")
    from pretrain.config.data_path import parse_data_path

    sources = parse_data_path(meta["config"]["data"]["path"])  # a mixture: its first source
    data_path = Path(sources[0].path if sources else "")
    if record is None and (data_path / "manifest.json").is_file():
        record = json.loads((data_path / "manifest.json").read_text())["tokenizer"]
    if record is None:
        raise ExportError(
            f"the checkpoint records no tokenizer and its data.path {data_path} has no "
            f"manifest.json; pass --tokenizer FILE (the tokenizer.json the shards were made with)")
    candidates = [Path(override)] if override else [
        Path(record["path"]), data_path.parent / Path(record["path"]).name,
        data_path / Path(record["path"]).name]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise ExportError(
            f"tokenizer file not found (tried {', '.join(map(str, candidates))}); pass "
            f"--tokenizer FILE with sha256 {record['sha256']}")
    digest = _sha256(path)
    if digest != record["sha256"]:
        raise ExportError(
            f"tokenizer {path} has sha256 {digest}, but the checkpoint was trained on shards "
            f"made with sha256 {record['sha256']}: it is another tokenizer (or was changed); "
            f"pass --tokenizer with the original file")
    return path, record


def _full_parameter(param: torch.Tensor, tp_group, tp_size: int, zero3: bool) -> torch.Tensor:
    """``param`` on every rank as one fp32 CPU tensor: ZeRO-3 gathered, TP shards joined."""
    import torch
    import torch.distributed as dist

    if zero3:
        import deepspeed

        gather = deepspeed.zero.GatheredParameters([param])
    else:
        gather = contextlib.nullcontext()
    with gather:
        local = param.data.detach().float().clone()
    if tp_size > 1 and getattr(param, "tensor_model_parallel", False):
        parts = [torch.empty_like(local) for _ in range(tp_size)]
        dist.all_gather(parts, local, group=tp_group)
        if getattr(param, "_lev_swiglu_fc1", False):
            # Each rank holds [its gate rows; its up rows]: join gates, then ups.
            halves = [p.chunk(2, dim=0) for p in parts]
            return torch.cat([h[0] for h in halves] + [h[1] for h in halves]).cpu()
        return torch.cat(parts, dim=param.partition_dim).cpu()
    return local.cpu()


def materialise_input_table(model, vocab_size: int, chunk: int = 4096) -> torch.Tensor:
    """Every id's input embedding, ``[vocab_size, d]`` fp32 (LEV evaluated id by id).

    Collective: every rank of the TP group (and ZeRO-3's DP group) calls it.
    """
    import torch

    embed = model.embedding.word_embeddings
    # Under sequence parallelism LEV would hand each rank a slice of the "sequence" of ids;
    # every rank needs every row here, so the rows are all-reduced instead.
    reduce_scatter, embed.reduce_scatter_embeddings = embed.reduce_scatter_embeddings, False
    rows = []
    try:
        with torch.no_grad():
            for start in range(0, vocab_size, chunk):
                ids = torch.arange(start, min(start + chunk, vocab_size), device=_device(model))
                rows.append(embed(ids[None, :]).float().reshape(len(ids), -1).cpu())
    finally:
        embed.reduce_scatter_embeddings = reduce_scatter
    return torch.cat(rows)


def _device(model) -> torch.device:
    return next(model.parameters()).device


def megatron_state(engine, config) -> dict[str, torch.Tensor]:
    """The backbone's full fp32 weights by megatron-core name (every rank), plus the input
    table under ``embedding.word_embeddings.weight`` (LEV materialised)."""
    from megatron.core import parallel_state as ps

    model = engine.module
    tp_group, tp = ps.get_tensor_model_parallel_group(), ps.get_tensor_model_parallel_world_size()
    zero3 = config.train.zero_stage == 3
    state = {}
    for name, param in model.named_parameters():
        if name.startswith("embedding.word_embeddings.") and config.model.embedding == "lev":
            continue  # LEV's own parameters: materialised below
        if name.endswith("mlp.linear_fc1.weight"):
            param._lev_swiglu_fc1 = True
        state[name] = _full_parameter(param, tp_group, tp, zero3)
    if config.model.embedding == "lev":
        if zero3:
            import deepspeed

            lev_params = list(model.embedding.word_embeddings.parameters())
            with deepspeed.zero.GatheredParameters(lev_params):
                table = materialise_input_table(model, config.model.vocab_size)
        else:
            table = materialise_input_table(model, config.model.vocab_size)
        state["embedding.word_embeddings.weight"] = table
    return state


def hf_state_dict(state: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """megatron-core GPT names and layouts -> ``LlamaForCausalLM`` names and layouts."""
    m = config.model
    heads, groups = m.num_attention_heads, m.num_query_groups or m.num_attention_heads
    head_dim = m.hidden_size // heads
    per_group = heads // groups
    out = {"model.embed_tokens.weight": state["embedding.word_embeddings.weight"],
           "model.norm.weight": state["decoder.final_layernorm.weight"]}
    if m.embedding != "tied":
        out["lm_head.weight"] = state["output_layer.weight"]
    for i in range(m.num_layers):
        src, dst = f"decoder.layers.{i}.", f"model.layers.{i}."
        qkv = state[src + "self_attention.linear_qkv.weight"].view(
            groups, (per_group + 2) * head_dim, m.hidden_size)
        q, k, v = qkv.split([per_group * head_dim, head_dim, head_dim], dim=1)
        out[dst + "self_attn.q_proj.weight"] = q.reshape(heads * head_dim, m.hidden_size)
        out[dst + "self_attn.k_proj.weight"] = k.reshape(groups * head_dim, m.hidden_size)
        out[dst + "self_attn.v_proj.weight"] = v.reshape(groups * head_dim, m.hidden_size)
        out[dst + "self_attn.o_proj.weight"] = state[src + "self_attention.linear_proj.weight"]
        gate, up = state[src + "mlp.linear_fc1.weight"].chunk(2, dim=0)
        out[dst + "mlp.gate_proj.weight"] = gate
        out[dst + "mlp.up_proj.weight"] = up
        out[dst + "mlp.down_proj.weight"] = state[src + "mlp.linear_fc2.weight"]
        out[dst + "input_layernorm.weight"] = state.get(
            src + "input_layernorm.weight",
            state.get(src + "self_attention.linear_qkv.layer_norm_weight"))
        out[dst + "post_attention_layernorm.weight"] = state.get(
            src + "pre_mlp_layernorm.weight", state.get(src + "mlp.linear_fc1.layer_norm_weight"))
    return {k: v.contiguous() for k, v in out.items()}


def llama_config(config, tokenizer: dict[str, Any]):
    """The ``LlamaConfig`` of ``config``'s backbone."""
    from transformers import LlamaConfig

    m = config.model
    return LlamaConfig(
        vocab_size=m.vocab_size, hidden_size=m.hidden_size, intermediate_size=m.ffn_hidden_size,
        num_hidden_layers=m.num_layers, num_attention_heads=m.num_attention_heads,
        num_key_value_heads=m.num_query_groups or m.num_attention_heads,
        head_dim=m.hidden_size // m.num_attention_heads, hidden_act="silu",
        max_position_embeddings=m.seq_length, rms_norm_eps=m.norm_epsilon,
        rope_parameters={"rope_type": "default", "rope_theta": float(m.rotary_base)},
        attention_bias=False, mlp_bias=False, tie_word_embeddings=m.embedding == "tied",
        bos_token_id=None, eos_token_id=tokenizer["eod_id"], pad_token_id=None,
        torch_dtype="float32")


def _verification_batch(vocab: int, seq_length: int) -> torch.Tensor:
    import torch

    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, vocab, (2, min(32, seq_length)), generator=gen)


def megatron_logits(engine, tokens: torch.Tensor) -> torch.Tensor:
    """Full-vocabulary fp32 logits ``[b, s, V]`` of the checkpoint's model (collective)."""
    import torch
    from megatron.core.tensor_parallel import gather_from_tensor_model_parallel_region

    device = engine.device
    tokens = tokens.to(device)
    positions = torch.arange(tokens.shape[1], device=device).expand_as(tokens)
    with torch.no_grad():
        logits = engine.module(tokens, positions, None)
        return gather_from_tensor_model_parallel_region(logits).float().cpu()


def _model_card(config, meta: dict[str, Any], tag_dir: Path, tokenizer: dict[str, Any],
                max_diff: float) -> str:
    m, t = config.model, config.train
    tokens = meta["consumed_samples"] * m.seq_length
    lev = (f" LEV (Leviathan, arXiv 2601.22040) was materialised into this table: "
           f"K={config.lev.num_coords}, s={config.lev.seed_dim}, G={config.lev.grid_size}, "
           f"R={config.lev.num_modes}." if m.embedding == "lev" else "")
    return f"""---
library_name: transformers
pipeline_tag: text-generation
---
# {tag_dir.parent.name} ({m.embedding} embedding), step {meta['step']}

Exported by `python -m pretrain.export_hf` from `{tag_dir}` as a plain `LlamaForCausalLM`
(d={m.hidden_size}, {m.num_layers} layers, {m.num_attention_heads} heads, SwiGLU
{m.ffn_hidden_size}, RMSNorm, RoPE base {m.rotary_base}, vocab {m.vocab_size}, context
{m.seq_length}, {'tied' if m.embedding == 'tied' else 'untied'} output head).{lev}

| | |
|---|---|
| steps | {meta['step']} |
| tokens seen | {tokens:,} ({meta['consumed_samples']:,} samples of {m.seq_length}) |
| global batch | {meta['global_batch_size']} samples |
| precision / ZeRO / TP | {t.precision} / {t.zero_stage} / {config.parallel.tensor_parallel} |
| data fingerprint | `{meta.get('data_fingerprint')}` |
| tokenizer sha256 | `{tokenizer['sha256']}` (EOD `{tokenizer.get('eod_token')}` = id {tokenizer['eod_id']}) |
| export check | max abs logit difference to the checkpoint {max_diff:.2e} (fp32, 2 x 32 ids) |

Training config (`meta.json`):

```json
{json.dumps(meta['config'], indent=1)}
```
"""


def export(tag_dir: Path, output: Path, tokenizer_override: str | None = None,
           reference_out: Path | None = None) -> float:
    """Export ``tag_dir`` to ``output`` (collective); returns the max logit difference."""
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    from pretrain.export.inference import (
        build_inference_engine,
        ensure_tensor_parallel,
        load_checkpoint_config,
    )

    meta = json.loads((tag_dir / "meta.json").read_text())
    tok_path, tok_record = find_tokenizer(meta, tokenizer_override)
    config, meta = load_checkpoint_config(tag_dir, meta["config"]["data"]["path"], 1)
    ensure_tensor_parallel(config.parallel.tensor_parallel, config.train.seed)
    engine = build_inference_engine(config, meta, tag_dir)
    state = megatron_state(engine, config)
    tokens = _verification_batch(int(tok_record["vocab_size"]), config.model.seq_length)
    reference = megatron_logits(engine, tokens)
    max_diff = float("nan")
    if dist.get_rank() == 0:
        from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

        hf_config = llama_config(config, tok_record)
        model = LlamaForCausalLM(hf_config)
        missing, unexpected = model.load_state_dict(hf_state_dict(state, config), strict=False)
        if config.model.embedding == "tied":
            missing = [k for k in missing if k != "lm_head.weight"]
        if missing or unexpected:
            raise ExportError(f"weight mapping incomplete: missing {missing}, unexpected "
                              f"{unexpected}")
        model.generation_config.eos_token_id = tok_record["eod_id"]
        model.save_pretrained(output, safe_serialization=True)
        eod = tok_record.get("eod_token") or "<|endoftext|>"
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(tok_path), eos_token=eod,
                                            model_max_length=config.model.seq_length)
        tokenizer.save_pretrained(output)
        reloaded = LlamaForCausalLM.from_pretrained(output, dtype=torch.float32).eval()
        with torch.no_grad():
            exported = reloaded(tokens).logits.float()
        max_diff = float((exported - reference[..., : exported.shape[-1]]).abs().max())
        (output / "README.md").write_text(_model_card(config, meta, tag_dir, tok_record,
                                                      max_diff))
        if reference_out is not None:
            torch.save({"tokens": tokens, "logits": reference}, reference_out)
    box = [max_diff]
    if dist.get_world_size() > 1:
        dist.broadcast_object_list(box, src=0)
    del engine, ps
    return box[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pretrain.export_hf",
        description="Export a checkpoint as a Hugging Face LlamaForCausalLM (LEV materialised).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog="""\
Run it with one process per tensor-parallel rank of the checkpoint (a TP=2 checkpoint:
2 processes, under torchrun, srun or mpiexec); a ZeRO-3 checkpoint at the data-parallel
size it was saved with. The export is loaded back and its logits compared with the
checkpoint's (exit 1 above 1e-4).

examples:
  python -m pretrain.export_hf --checkpoint runs/lev_1b2 --output hf/lev_1b2
  torchrun --standalone --nproc-per-node 2 -m pretrain.export_hf \\
      --checkpoint runs/lev_tp2 --output hf/lev_tp2
""")
    parser.add_argument("--checkpoint", required=True, help="tag dir (step*) or save_dir")
    parser.add_argument("--output", required=True, help="new directory for the HF model")
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer.json the shards were made with (default: the path "
                             "recorded in the checkpoint / its shard manifest; sha256 checked)")
    parser.add_argument("--reference-out", default=None,
                        help="also save the checkpoint's logits on the check batch here (.pt)")
    parser.add_argument("--force", action="store_true", help="write into a non-empty --output")
    args = parser.parse_args(argv)
    setup_logging()

    from data_prep.paths import PathOutsideError
    from megatron_patches.safe_load import UnsafeCheckpointError
    from pretrain.config import ConfigError
    from pretrain.export.inference import resolve_checkpoint
    from pretrain.runtime.distributed import destroy_distributed, init_distributed

    output = Path(args.output)
    try:
        if output.exists() and any(output.iterdir()) and not args.force:
            raise ExportError(f"--output {output} exists and is not empty; choose a new "
                              f"directory or pass --force")
        tag_dir = resolve_checkpoint(args.checkpoint)
        meta = json.loads((tag_dir / "meta.json").read_text())
        find_tokenizer(meta, args.tokenizer)  # refuse before any heavy work
        output.mkdir(parents=True, exist_ok=True)
        if not os.access(output, os.W_OK):
            raise ExportError(f"--output {output} is not writable")
        init_distributed(meta["config"]["parallel"]["tensor_parallel"],
                         meta["config"]["train"]["seed"])
        max_diff = export(tag_dir, output, args.tokenizer,
                          Path(args.reference_out) if args.reference_out else None)
    except (UnsafeCheckpointError, PathOutsideError) as exc:
        log.error("%s: %s (exit 78)", type(exc).__name__, exc)
        return 78  # refused input: docs/trust.md
    except (EvaluationError, ConfigError) as exc:
        log.error("%s", exc)
        return 2
    finally:
        destroy_distributed()
    if not max_diff <= TOLERANCE:
        log.error("export check FAILED: max |logit difference| %.3e > %.0e between %s and %s",
                  max_diff, TOLERANCE, tag_dir, output)
        return 1
    log.info("exported %s -> %s (max |logit difference| %.2e); load it with "
             "AutoModelForCausalLM.from_pretrained(%r)", tag_dir, output, max_diff, str(output))
    return 0

