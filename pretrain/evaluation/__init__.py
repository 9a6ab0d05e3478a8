"""Evaluation: perplexity per frequency bucket, reports and plots, the offline lm-eval cloze task."""
