"""Tests that run jobs on a real local Slurm (slurm/local_cluster.py)."""
