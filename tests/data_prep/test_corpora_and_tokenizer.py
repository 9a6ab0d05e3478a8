"""The second corpus (WordNet glosses) and a tokenizer that never sees validation text."""

from __future__ import annotations

import json
import re

import pytest
from dp_helpers import read_zst_lines, run_tool
from tokenizers import Tokenizer

from data_prep.packing import is_val

SYNSET_LINE = re.compile(r"^[^\n]+ \((noun|verb|adjective|adverb)\): \S.*$")


@pytest.fixture(scope="module")
def wordnet_corpus(tmp_path_factory, request):
    """Built by the one command a user runs (Debian's wordnet-base via apt-get download)."""
    cache = request.config.cache.mkdir("lev_wordnet_deb")
    out = tmp_path_factory.mktemp("wordnet")
    debs = sorted(cache.glob("wordnet-base_*.deb"))
    if not debs:  # first session: fetch once into pytest's cache, like the sdist
        from data_prep.wordnet_corpus import find_wordnet

        find_wordnet(str(cache))  # returns the installed copy, if any, without a .deb
        debs = sorted(cache.glob("wordnet-base_*.deb"))
    proc = run_tool("wordnet_corpus.py", out, *(["--deb", debs[0]] if debs else []))
    return out, proc


def test_wordnet_corpus_has_every_part_of_speech_as_pile_jsonl(wordnet_corpus):
    out, _ = wordnet_corpus
    docs = {name: [json.loads(line) for line in read_zst_lines(out / name)]
            for name in ("00.jsonl.zst", "01.jsonl.zst", "02.jsonl.zst", "03.jsonl.zst")}
    # WordNet 3.0: 82,115 noun, 13,767 verb, 18,156 adjective, 3,621 adverb synsets.
    synsets = {name: sum(d["text"].count("\n") for d in ds) for name, ds in docs.items()}
    assert synsets == {"00.jsonl.zst": 82115, "01.jsonl.zst": 13767, "02.jsonl.zst": 18156,
                       "03.jsonl.zst": 3621}
    first = docs["00.jsonl.zst"][0]["text"]
    assert first.startswith("entity (noun): that which is perceived or known or inferred")
    for ds in docs.values():
        for d in ds[:50]:
            assert d["meta"]["pile_set_name"] == "WordNet 3.0"
            lines = d["text"].rstrip("\n").split("\n")
            assert 1 <= len(lines) <= 16
            assert all(SYNSET_LINE.match(line) for line in lines), lines
            assert "_" not in lines[0].split(" (")[0]  # multi-word lemmas use spaces


def _corpus_with_marked_val_docs(path, val_fraction: float) -> int:
    """Train docs (by shard.py's hash) without, val docs with a word no train doc has."""
    docs = []
    for i in range(400):
        plain = f"Document {i} talks about the weather and the sea, as documents do."
        marked = plain + " quizzaciousness" * 40
        if is_val(marked, val_fraction):
            docs.append(marked)
        elif not is_val(plain, val_fraction):
            docs.append(plain)
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return sum("quizzaciousness" in d for d in docs)


def test_tokenizer_training_leaves_out_the_validation_documents(tmp_path):
    corpus = tmp_path / "docs.jsonl"
    n_val = _corpus_with_marked_val_docs(corpus, 0.3)
    assert n_val > 10
    run_tool("train_tokenizer.py", "--input", corpus, "--output", tmp_path / "all.json",
             "--vocab-size", "300", "--min-frequency", "2")
    proc = run_tool("train_tokenizer.py", "--input", corpus, "--output", tmp_path / "train.json",
                    "--vocab-size", "300", "--min-frequency", "2", "--val-fraction", "0.3")
    assert f"left out {n_val} validation documents" in proc.stdout
    seen_all = Tokenizer.from_file(str(tmp_path / "all.json")).get_vocab()
    seen_train = Tokenizer.from_file(str(tmp_path / "train.json")).get_vocab()
    assert any("quizz" in tok for tok in seen_all)  # the marker is learnt when seen...
    assert not any("quizz" in tok for tok in seen_train)  # ...and never from val docs alone


def test_tokenizer_val_fraction_out_of_range_is_refused(tmp_path):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text(json.dumps({"text": "a b c"}) + "\n")
    proc = run_tool("train_tokenizer.py", "--input", corpus, "--output", tmp_path / "t.json",
                    "--val-fraction", "1.5", check=False)
    assert proc.returncode == 2 and "--val-fraction must be in [0, 1)" in proc.stderr


def test_tokenizer_output_that_is_a_directory_is_refused_leaving_nothing(tmp_path):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text(json.dumps({"text": "a b c"}) + "\n")
    (tmp_path / "tok").mkdir()
    proc = run_tool("train_tokenizer.py", "--input", corpus, "--output", tmp_path / "tok",
                    check=False)
    assert proc.returncode == 2, proc.stderr
    assert "is a directory; pass the file to write, e.g." in proc.stderr
    assert "Traceback" not in proc.stderr and list((tmp_path / "tok").iterdir()) == []
    assert [p.name for p in tmp_path.iterdir() if ".tmp." in p.name] == []


def test_tokenizer_training_reports_progress_and_a_summary(tmp_path, pile_corpus):
    proc = run_tool("train_tokenizer.py", "--input", pile_corpus, "--output", tmp_path / "t.json",
                    "--vocab-size", "300", "--log-every-s", "0.001")
    lines = [line for line in proc.stderr.splitlines() if "progress:" in line]
    assert lines and " MB (" in lines[-1] and "docs/s" in lines[-1] and "ETA " in lines[-1]
    assert "computing the BPE merges" in proc.stderr
    assert "wrote " in proc.stdout and " in " in proc.stdout.splitlines()[-1]
