"""The training core: the model, optimizer, lr schedule, start-up report and the Trainer's phases."""
