"""Getting models out: checkpoints loaded for inference, Hugging Face export, generation."""
