"""Processes and ranks: launcher detection, distributed set-up, stopping, the watchdog, errors, logs and metric sinks."""
