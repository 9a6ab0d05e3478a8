"""The offline lm-eval task: which passages become cloze items, and how scores are tabulated."""

from pretrain.evaluation.cloze_task import cloze_item
from pretrain.study.cloze import cloze_table


def test_the_target_is_the_last_sentence_final_word_with_its_space():
    item = cloze_item("He came to the gate at dusk. She closed it quickly! Then a", min_words=3)
    assert item == {"context": "He came to the gate at dusk. She closed it", "target": " quickly"}


def test_passages_without_a_sentence_end_or_with_too_little_context_are_skipped():
    assert cloze_item("no sentence ends here at all", min_words=2) is None
    assert cloze_item("Too short.", min_words=2) is None
    # A word after a line break (a speaker's name in a play) is not a target.
    assert cloze_item("the king spoke long and well\nROMEO.", min_words=2) is None


def test_the_table_gives_mean_and_sample_std_over_seeds():
    table = cloze_table({"lev": [{"acc": 0.2, "ppl": 100.0}, {"acc": 0.4, "ppl": 300.0}],
                         "tied": [{"acc": 0.1, "ppl": 500.0}]}, items=50)
    assert "(50 held-out passages)" in table
    assert "| lev | 2 | 0.3000 ± 0.1414 | 200.0 ± 141.4 |" in table
    assert "| tied | 1 | 0.1000 ± 0.0000 | 500.0 ± 0.0 |" in table
