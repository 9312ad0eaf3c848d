"""`chargen word2vec`: train skip-gram word vectors on a corpus, or print a saved model's nearest words."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from chargen.cli.app import app
from chargen.cli.ui import THREADS_HELP, err_console, markup, say, table_console, timestamped_dir
from chargen.errors import CheckpointError, TrainingError, UsageError

TRAIN, QUERY = "Training", "Query"


class Loss(str, Enum):
    negative = "negative"
    softmax = "softmax"


@app.command(rich_help_panel="Research")
def word2vec(
    corpus: Annotated[str, typer.Option(help="Corpus names or files, comma-separated; 'books' = the four books.",
                                        rich_help_panel=TRAIN)] = "books",
    loss: Annotated[Loss, typer.Option(help="Full softmax or negative sampling.", rich_help_panel=TRAIN)] = Loss.negative,
    negatives: Annotated[int, typer.Option(help="Noise words per pair (unigram^0.75).", rich_help_panel=TRAIN)] = 5,
    dim: Annotated[int, typer.Option(help="Vector size.", rich_help_panel=TRAIN)] = 100,
    window: Annotated[int, typer.Option(help="Largest window; each centre draws 1..window.", rich_help_panel=TRAIN)] = 5,
    min_count: Annotated[int, typer.Option(help="Drop words seen fewer times.", rich_help_panel=TRAIN)] = 5,
    sample: Annotated[float, typer.Option(help="Subsampling threshold t of frequent words (0: off).",
                                          rich_help_panel=TRAIN)] = 1e-4,
    epochs: Annotated[int, typer.Option(help="Passes over the corpus.", rich_help_panel=TRAIN)] = 5,
    lr: Annotated[float, typer.Option(help="Starting learning rate (decays linearly).", rich_help_panel=TRAIN)] = 0.05,
    batch_size: Annotated[int, typer.Option(help="Pairs per update.", rich_help_panel=TRAIN)] = 1024,
    seed: Annotated[int, typer.Option(help="Random seed.", rich_help_panel=TRAIN)] = 0,
    out: Annotated[Optional[Path], typer.Option(help="Model folder, new or empty. Default: checkpoints/word2vec-<time>.",
                                                rich_help_panel=TRAIN, show_default=False)] = None,
    similar: Annotated[Optional[str], typer.Option(help="Print the words nearest to this one (needs --model).",
                                                   rich_help_panel=QUERY)] = None,
    model: Annotated[Optional[Path], typer.Option(help="A saved word2vec folder to query.", rich_help_panel=QUERY)] = None,
    top: Annotated[int, typer.Option(help="How many neighbours.", rich_help_panel=QUERY)] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Neighbours as JSON on stdout.", rich_help_panel=QUERY)] = False,
    threads: Annotated[Optional[int], typer.Option(help=THREADS_HELP, show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Word vectors by skip-gram (word2vec), or the nearest words of a saved model by cosine.

    [bold]Examples[/]

      chargen word2vec --corpus books --epochs 5 --out checkpoints/w2v
      chargen word2vec --similar king --model checkpoints/w2v
    """
    import math

    from chargen import outputs
    from chargen.experiments import word2vec as w2v
    from chargen.runtime import use_threads

    use_threads(threads)
    if similar is not None or model is not None:
        if similar is None or model is None:
            raise UsageError("--similar and --model go together: --similar WORD --model DIR")
        found = w2v.neighbours(w2v.load(model), similar, top)
        if as_json:
            sys.stdout.write(json.dumps([{"word": w, "cosine": c} for w, c in found]) + "\n")
            return
        table = Table(title=markup("nearest to {word}", word=repr(similar)), title_justify="left")
        table.add_column("word")
        table.add_column("cosine", justify="right")
        for word, cos in found:
            table.add_row(escape(word), f"{cos:.3f}")
        table_console().print(table)
        return

    if not (math.isfinite(sample) and sample >= 0):
        raise UsageError(f"--sample must be 0 (off) or a positive threshold, got {sample}")
    if not math.isfinite(lr):
        raise UsageError(f"--lr must be a finite positive number, got {lr}")
    settings = w2v.Word2VecSettings(dim=dim, window=window, min_count=min_count, sample=sample, loss=loss.value,
                                    negatives=negatives, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    settings.check()
    target = out or timestamped_dir("word2vec")
    # never into a run directory (a language model's, or another word2vec model's) nor over a user's files
    outputs.check_folder(target, param="out", holds=(w2v.EMBEDDINGS, w2v.VOCAB))
    sentences = w2v.load_sentences(corpus)
    vocab = w2v.build_vocab(sentences, settings.min_count, settings.max_vocab)
    if not quiet:
        say("{corpus}: {words:,} words in {sentences:,} sentences, {vocab:,} distinct words seen at least "
            "{min_count} times", corpus=corpus, words=sum(map(len, sentences)), sentences=len(sentences),
            vocab=len(vocab), min_count=min_count)
    with _Bar(quiet) as bar:
        trained = w2v.train(sentences, settings, progress=bar, vocab=vocab)
    if not sum(h["pairs"] for h in trained.history):
        raise TrainingError(f"no training pairs in {corpus} with these settings (min_count {min_count}, "
                            f"sample {sample:g}); nothing was saved")
    outputs.check_folder(target, param="out", holds=(w2v.EMBEDDINGS, w2v.VOCAB))  # again: training took a while
    try:
        w2v.save(trained, outputs.make_folder(target, param="out"))
    except OSError as e:
        raise CheckpointError(f"{target}: cannot save the model ({e.strerror or e})") from None
    last = trained.history[-1]
    shown = f"{last['bce']:.3f} (mean over the 1+K binary terms; {last['loss']:.3f} per pair)" if "bce" in last \
        else f"{last['loss']:.3f} per pair"
    say("{words:,} words, {pairs:,} pairs in {seconds:.0f}s; last epoch's loss {shown}", words=len(trained.vocab),
        pairs=sum(h["pairs"] for h in trained.history), seconds=last["seconds"], shown=shown)
    sys.stdout.write(f"{target}\n")


class _Bar:
    """``train``'s progress as a rich bar (epoch, loss, pairs per second), drawn from the first report on."""

    def __init__(self, quiet: bool) -> None:
        self.progress = Progress(
            TextColumn("[bold]word2vec"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=err_console, disable=quiet,
        )
        self.task = self.progress.add_task("word2vec", total=1.0, status="")
        self.started = False

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self.progress.stop()

    def __call__(self, info: dict[str, Any]) -> None:
        if not self.started:
            self.progress.start()
            self.started = True
        status = f"epoch {info['epoch']}/{info['epochs']}  loss {info['loss']:.3f}  {info['pairs_per_s']:,.0f} pairs/s"
        self.progress.update(self.task, completed=info["fraction"], status=status)
