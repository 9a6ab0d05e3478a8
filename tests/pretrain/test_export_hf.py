"""Models leave the project: HF export (LEV materialised), generation, lm-evaluation-harness.

Real tiny checkpoints trained on 2 gloo ranks, exported by `python -m pretrain.export_hf`
under the launcher layout each needs, loaded back by transformers in this process.
"""

import json
import math
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO, WORKERS, cpu_env, rank_logs, run_torchrun, spawn_ranks, wait_ranks
from tests.pretrain.conftest import TRAINED_STEPS

pytestmark = pytest.mark.multiproc

transformers = pytest.importorskip("transformers")

CASES = {  # name: (the session's run, tests/pretrain/conftest.py; export ranks)
    "lev-zero1": ("lev", 1),
    "lev-zero3": ("lev_zero3", 2),  # ZeRO-3: exported at its saved DP
    "lev-tp2": ("lev_tp2", 2),
    "lev-mlp-tp2": ("lev_mlp_tp2", 2),  # lev.aggregation=mlp, its hidden units split
    "tied-zero3": ("tied_zero3", 2),
    "untied-zero3": ("untied_zero3", 2),
}


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """name -> (checkpoint tag, HF dir, reference logits file), exported once."""
    done = {}

    def get(name):
        if name not in done:
            run, ranks = CASES[name]
            save = trained(run)
            root = tmp_path_factory.mktemp(name)
            hf, ref = root / "hf", root / "reference.pt"
            argv = ["-m", "pretrain.export_hf", "--checkpoint", str(save),
                    "--output", str(hf), "--reference-out", str(ref)]
            codes = wait_ranks(spawn_ranks(ranks, argv, log_dir=root / "export-logs"),
                               root / "export-logs")
            assert codes == [0] * ranks, rank_logs(root / "export-logs")
            done[name] = (save / f"step{TRAINED_STEPS:08d}", hf, ref)
        return done[name]

    return get


def hf_model(path):
    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


@pytest.mark.parametrize("name", list(CASES))
def test_the_exported_llama_computes_the_checkpoints_logits(exported, name):
    _, hf, ref = exported(name)
    reference = torch.load(ref)
    model = hf_model(hf)
    assert type(model).__name__ == "LlamaForCausalLM"
    with torch.no_grad():
        logits = model(reference["tokens"]).logits
    assert (logits - reference["logits"]).abs().max() <= 1e-4
    assert reference["logits"].std() > 0.01  # real logits, not a constant
    config = json.loads((hf / "config.json").read_text())
    assert config["tie_word_embeddings"] == name.startswith("tied")


@pytest.mark.parametrize("name", ["lev-zero1", "lev-tp2", "lev-mlp-tp2"])
def test_the_materialised_table_equals_levs_forward_for_every_id(exported, tmp_path, name):
    tag, hf, _ = exported(name)
    out = tmp_path / "rows.pt"
    tp = 2 if name.endswith("tp2") else 1
    run_torchrun(WORKERS / "lev_table_worker.py", tp, str(tag), str(out))
    rows = torch.load(out)
    table = hf_model(hf).model.embed_tokens.weight.detach()
    assert torch.allclose(table[rows["ids"]], rows["rows"], atol=1e-6, rtol=0)


def test_the_tokenizer_and_model_card_travel_with_the_export(exported, shard_dir):
    _, hf, _ = exported("lev-zero1")
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf)
    manifest = json.loads((shard_dir / "manifest.json").read_text())
    assert tokenizer.eos_token_id == manifest["tokenizer"]["eod_id"]
    assert tokenizer("the king").input_ids  # the shards' own BPE, loadable by transformers
    card = (hf / "README.md").read_text()
    assert f"step {TRAINED_STEPS}" in card and manifest["tokenizer"]["sha256"] in card


def generate_ids(checkpoint, *extra):
    out = subprocess.run([sys.executable, "-m", "pretrain.generate", "--checkpoint",
                          str(checkpoint), "--prompt", "the king", "--max-new-tokens", "12",
                          "--print-ids", *extra], cwd=REPO, env=cpu_env(), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])["ids"]


def test_greedy_generation_from_the_checkpoint_and_the_export_agree(exported):
    tag, hf, _ = exported("lev-zero1")
    assert generate_ids(tag) == generate_ids(hf)
    sampled = [generate_ids(hf, "--temperature", "1.0", "--top-p", "0.9", "--seed", str(s))
               for s in (1, 1, 2)]
    assert sampled[0] == sampled[1] and sampled[0] != sampled[2]


def test_export_refuses_a_tokenizer_whose_file_changed(exported, tmp_path):
    tag, _, _ = exported("lev-zero1")
    changed = tmp_path / "tokenizer.json"
    recorded = json.loads((tag / "meta.json").read_text())["tokenizer"]["path"]
    original = json.loads(open(recorded, encoding="utf-8").read())
    original["added_tokens"].append({**original["added_tokens"][0], "id": 99999,
                                     "content": "<|new|>"})
    changed.write_text(json.dumps(original))
    out = subprocess.run([sys.executable, "-m", "pretrain.export_hf", "--checkpoint", str(tag),
                          "--output", str(tmp_path / "hf"), "--tokenizer", str(changed)],
                         cwd=REPO, env=cpu_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert f"tokenizer {changed} has sha256" in out.stdout and "another tokenizer" in out.stdout
    assert not (tmp_path / "hf").exists()


def direct_cloze(model, tokenizer, items):
    """acc and perplexity of lev_cloze computed from the model's log-probabilities, with
    lm-eval's context/continuation split (encode the whole, cut at the context's length)."""
    correct, logprob_sum, words = 0, 0.0, 0
    for item in items:
        whole = tokenizer.encode(item["context"] + item["target"])
        context = tokenizer.encode(item["context"])
        target = whole[len(context):]
        with torch.no_grad():
            logits = model(torch.tensor([whole[:-1]])).logits[0].double()
        logp = torch.log_softmax(logits, -1)[len(context) - 1:]
        logprob_sum += float(logp[torch.arange(len(target)), torch.tensor(target)].sum())
        correct += bool((logp.argmax(-1) == torch.tensor(target)).all())
        words += 1
    return correct / words, math.exp(-logprob_sum / words)


def test_lm_eval_on_the_offline_task_equals_a_direct_computation(exported, shard_dir, tmp_path):
    pytest.importorskip("lm_eval")
    _, hf, _ = exported("lev-zero1")
    task = tmp_path / "task"
    subprocess.run([sys.executable, "-m", "pretrain.cloze_task", "--data-path", str(shard_dir),
                    "--output", str(task), "--min-words", "3"], cwd=REPO, env=cpu_env(),
                   check=True, capture_output=True)
    out = tmp_path / "lm_eval"
    subprocess.run([sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args",
                    f"pretrained={hf},dtype=float32", "--include_path", str(task), "--tasks",
                    "lev_cloze", "--device", "cpu", "--output_path", str(out)],
                   cwd=tmp_path, env=cpu_env(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1"),
                   check=True, capture_output=True, timeout=600)
    result = json.loads(next(out.rglob("results_*.json")).read_text())["results"]["lev_cloze"]
    items = [json.loads(line) for line in (task / "lev_cloze.jsonl").read_text().splitlines()]
    acc, ppl = direct_cloze(hf_model(hf), transformers.AutoTokenizer.from_pretrained(hf), items)
    assert len(items) >= 5
    assert result["acc,none"] == pytest.approx(acc, abs=1e-9)
    assert result["perplexity,none"] == pytest.approx(ppl, rel=1e-4)
