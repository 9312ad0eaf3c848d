"""Experiments: grids of training runs and measurements on one shared harness (``harness``).

``compare`` (cells side by side under one budget), ``probe`` (palindrome memorisation against
length), ``gradients`` (gradient flow through time), ``word2vec`` (skip-gram embeddings),
``optimisers`` and ``exercises`` (the course exercises' measurements). Each saves a JSON results file that the report
reads back; none imports the CLI.
"""
