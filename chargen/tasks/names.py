"""Surname tasks: a language classifier (``classify``) and a language-conditioned name generator (``generate``).

Both read the folded, deduplicated names with their persisted stratified split
(``chargen.data.names``) and batch variable-length names time-major, right-padded, with their
lengths. The cores are causal, so padding after a name's last character cannot reach what is
read from that name: the classifier reads the output at each name's own last character, and
the generator's padded targets are ignored by the loss.

A name listed under several languages counts as correct when any of them is predicted, and
the classifier's loss is ``-log p(any of its languages)``; the generator learns the name under
each of its languages (see ``chargen.data.names``).

This module holds what both tasks share (vocabularies, padding, the batch sampler and its resume
state); the tasks are ``chargen.tasks.classify`` and ``chargen.tasks.generate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from chargen.data.labelled import MAX_NAME_LENGTH
from chargen.data.names import FOLD_ALPHABET, NamesData
from chargen.errors import CorpusError, UsageError
from chargen.runtime import rank, world_size
from chargen.tasks.base import BaseTask
from chargen.vocab import Vocab

NAMES_CORPUS = "names"
BALANCE = ("weighted", "sampler", "adjusted", "none")
PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
MAX_NAME_LENGTH = 40  # generated names stop here if no end token came (the longest training name has 20)
MAX_CLASSIFY_LENGTH = MAX_NAME_LENGTH  # longer input is not a surname; refusing it keeps one typo from costing a long forward pass
DEFAULT_CLASSIFIER = "surnames"
EVAL_SAMPLES_PER_LANGUAGE = 100
EVAL_SAMPLE_SEED = 0


def classifier_vocab() -> Vocab:
    """Every character folding can leave, so any folded input encodes; ``<pad>`` is id 0."""
    return Vocab(sorted(FOLD_ALPHABET), [PAD])


def generator_vocab() -> Vocab:
    return Vocab(sorted(FOLD_ALPHABET), [PAD, BOS, EOS])


def check_corpus(corpus: str) -> None:
    if corpus != NAMES_CORPUS:
        raise UsageError(f"the surname tasks train on the {NAMES_CORPUS!r} corpus; pass corpus {NAMES_CORPUS} (got {corpus!r})", params="corpus")


def pad_batch(seqs: Sequence[Sequence[int]], pad: int = 0) -> tuple[Tensor, Tensor]:
    """Right-padded time-major ids ``(T, N)`` and lengths ``(N,)`` (T = the longest sequence)."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    steps = int(lengths.max()) if len(seqs) else 0
    rows = [[*s, *[pad] * (steps - len(s))] for s in seqs]
    return torch.tensor(rows, dtype=torch.long).view(len(seqs), steps).T.contiguous(), lengths  # (T, N)


class IndexBatches:
    """Indices of training examples: shuffled epochs, or (with ``weights``) draws with replacement.

    Seeded by its own generator; ``state_dict`` holds the generator, the epoch's permutation and
    the position, so a resumed run draws exactly the batches it would have drawn. Under torchrun
    every rank draws the same global batch and keeps its own slice.
    """

    def __init__(self, n: int, batch_size: int, seed: int, weights: Tensor | None = None) -> None:
        self.n, self.batch_size, self.weights = n, batch_size, weights
        self.generator = torch.Generator().manual_seed(seed)
        self.perm: Tensor | None = None
        self.pos = 0

    def next(self) -> Tensor:
        if self.weights is not None:
            idx = torch.multinomial(self.weights, self.batch_size, replacement=True, generator=self.generator)
        else:
            parts, need = [], self.batch_size
            while need:
                if self.perm is None or self.pos >= self.n:
                    self.perm, self.pos = torch.randperm(self.n, generator=self.generator), 0
                part = self.perm[self.pos : self.pos + need]
                self.pos += len(part)
                need -= len(part)
                parts.append(part)
            idx = torch.cat(parts)
        return idx[rank() :: world_size()]

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "perm": self.perm, "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.perm, self.pos = state["perm"], int(state["pos"])


def check_data(data: NamesData, task_config: dict[str, Any]) -> None:
    if data.digest != task_config["data_sha256"] or data.languages != task_config["languages"]:
        raise CorpusError("the names data or its split is not what this model was trained on")



class NamesBatchState(BaseTask):
    """Resume state shared by both surname tasks: their data position is their batch sampler's."""

    batches: IndexBatches

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches.load_state_dict(state["batches"])
