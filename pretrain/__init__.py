"""LEV pretraining: config, model, data loading, training, evaluation."""
