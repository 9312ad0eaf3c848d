"""Experiments: grids of runs and studies built on the library (compare, probe, gradients, word2vec)."""
