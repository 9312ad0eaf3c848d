"""A run's directory over one ``fit`` call: claim and lock it, restore a checkpoint, trim logs, draw the loss, clean up a
run that never saved; and the checks before a run starts or resumes (new folder, same data, recorded settings)."""

from __future__ import annotations

import shutil
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from chargen import checkpoint
from chargen.config import TrainConfig
from chargen.errors import CheckpointError, TrainingError, UsageError
from chargen.models import ModelConfig
from chargen.plots import plot_loss
from chargen.runtime import rank, set_rng_state
from chargen.schema import RUN_FIELDS
from chargen.tracking import truncate_after
from chargen.training.state import TrainingBase


class RunDirectory(TrainingBase):
    """The run directory's side of a ``fit`` call."""

    def _claim(self, stack: ExitStack) -> None:
        """Rank 0: create the run directory and lock it for this run (released when the run ends)."""
        created = not self.run_dir.exists()
        self.found = set() if created else {p.name for p in self.run_dir.iterdir()}
        lock = checkpoint.RunLock(self.run_dir)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            lock.acquire()
        except OSError as e:
            if created:
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise UsageError(f"cannot write to the run directory {self.run_dir}: {e.strerror or e}") from None
        self.created = created
        stack.callback(lock.release)
        if lock.note:
            self.cb.on_note(lock.note)

    def _restore(self) -> None:
        """Every rank: weights, optimiser, schedule position, its own RNG and data position."""
        recorded = checkpoint.load_config(self.run_dir)
        check_same_data(self.run_dir, recorded.get("task_config") or {}, self.config["task_config"])
        self.config["commands"] = [*_commands(recorded), self.config["command"]]
        self.config["command"] = recorded.get("command", self.config["command"])
        path = self.run_dir / checkpoint.TRAINER
        trainer = checkpoint.load_tensors(path)
        if not isinstance(trainer, dict):
            raise CheckpointError(f"{path}: not a chargen trainer state")
        try:
            saved_world = int(trainer.get("world_size", 1))
        except (TypeError, ValueError):
            raise CheckpointError(f"{path}: world_size {trainer.get('world_size')!r} is not a number") from None
        if saved_world != self.world:
            raise UsageError(
                f"{self.run_dir} was trained by {saved_world} process(es) and this launch has {self.world}; "
                f"resume it with the same number (torchrun --nproc-per-node ... so that WORLD_SIZE={saved_world})"
            )
        weights = checkpoint.load_tensors(self.run_dir / checkpoint.WEIGHTS)
        checkpoint.check_weights(self.run_dir / checkpoint.WEIGHTS, weights)
        try:
            own = trainer["ranks"][rank()]
            self.module.load_state_dict(weights)
            self.optimizer.load_state_dict(trainer["optimizer"])
            self.task.load_state_dict(own["task"])
            set_rng_state(own["rng"])
            self.sample_generator.set_state(trainer["sample_generator"])
            run = self.run_state
            run.step, run.elapsed = int(trainer["step"]), float(trainer["elapsed"])
            run.cpu_seconds = float(trainer.get("cpu_seconds", 0.0))  # runs saved before the CPU budget: none counted
            run.best_val_loss, run.metrics = float(trainer["best_val_loss"]), dict(trainer["metrics"])
            run.best_step, run.evals_since_best = trainer.get("best_step"), int(trainer.get("evals_since_best", 0))
            run.saved_step = run.step
            total = self.budget.total_steps()
            to = (f" to step {total:,}" if total else f" for {self.cfg.time_limit:g}s in all" if self.cfg.time_limit
                  else f" for {self.cfg.cpu_limit:g} CPU-seconds in all")
            self.cb.on_note(f"resuming {self.run_dir} from step {run.step:,}{to}")
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:
            detail = " ".join(str(e).split())[:200]
            raise CheckpointError(f"{path}: does not fit this run ({type(e).__name__}: {detail})") from None
        self._collective(self._truncate_logs)
        saved = checkpoint.load_config(self.run_dir)
        if "parent" in saved:  # a fine-tuned run stays traceable to its parent across resumes
            self.config["parent"] = saved["parent"]

    def _truncate_logs(self) -> None:
        """Rank 0: drop log records past the checkpoint, so the resumed run does not log those steps twice."""
        for name in ("metrics.jsonl", "samples.jsonl"):
            try:
                truncate_after(self.run_dir / name, self.run_state.step)
            except OSError as e:
                raise TrainingError(f"cannot rewrite {self.run_dir / name}: {e.strerror or e}") from None

    def _plot(self) -> None:
        try:
            plot_loss(self.run_dir / "metrics.jsonl", self.run_dir / "loss.png",
                      title=f"{self.task.name}: {self.run_dir.name}")
        except OSError as e:  # the checkpoint is safe; a missing figure is not worth failing the run
            self.cb.on_note(f"could not draw {self.run_dir / 'loss.png'}: {e.strerror or e}")

    def _forget_unsaved_run(self) -> None:
        """A fresh run that fails before its first checkpoint leaves no half-made run directory behind."""
        if not self.main or self.resume or self.created is None or (self.run_dir / checkpoint.CONFIG).exists():
            return
        if self.created:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        else:
            for name in ("metrics.jsonl", "samples.jsonl"):
                if name not in self.found:  # never a file that was there before this run
                    (self.run_dir / name).unlink(missing_ok=True)


def _commands(config: dict[str, Any]) -> list[str]:
    """The commands that made a run so far, oldest first (runs before ``commands`` kept only the last)."""
    commands = config.get("commands")
    if isinstance(commands, list) and all(isinstance(c, str) for c in commands):
        return commands
    return [config["command"]] if isinstance(config.get("command"), str) else []


DATA_DIGESTS = ("corpus_sha256", "data_sha256")  # what tasks record about the text they trained on


def check_same_data(run_dir: Path, recorded: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to resume on data other than the run's: same corpus name, different bytes."""
    for key in DATA_DIGESTS:
        if key in recorded and key in current and recorded[key] != current[key]:
            options = recorded.get("options") or {}
            name = options.get("corpus") if isinstance(options, dict) else None
            now = (current.get("options") or {}).get("corpus") if isinstance(current.get("options"), dict) else None
            if now is not None and now != name:  # pointed elsewhere (a moved text): say which text was refused
                raise CheckpointError(
                    f"corpus {now!r} is not the text {run_dir} was trained on ({name}; sha256 {str(current[key])[:12]}... "
                    f"vs {str(recorded[key])[:12]}... recorded)")
            raise CheckpointError(
                f"corpus {name!r} has changed since {run_dir} was trained on it (sha256 {str(current[key])[:12]}... "
                f"now, {str(recorded[key])[:12]}... recorded); resuming would train on other text: restore the "
                "original file, or start a new run"
            )


def check_new_run_dir(run_dir: Path) -> None:
    """A new run may only go into a new or empty folder, or one a killed chargen run left before its
    first checkpoint: never a folder of the user's own files, which the run would overwrite."""
    if (run_dir / checkpoint.CONFIG).exists():
        raise UsageError(f"{run_dir} already holds a trained model; continue it with {{resume}} or pick another "
                         "{run_dir}", params=("resume", "run_dir"))
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"{{run_dir}} {run_dir} exists and is not a folder; give a new or empty folder", params="run_dir")
    if not run_dir.is_dir():
        return
    try:
        names = {p.name for p in run_dir.iterdir()}
    except OSError as e:
        raise UsageError(f"cannot read the run directory {run_dir}: {e.strerror or e}") from None
    leftovers = {checkpoint.LOCK, "metrics.jsonl", "samples.jsonl", "loss.png", checkpoint.JOURNAL}
    ours = checkpoint.LOCK in names and all(n in leftovers or checkpoint.is_temp_file(n) for n in names)
    if names and not ours:
        shown = ", ".join(sorted(names)[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise UsageError(f"{{run_dir}} {run_dir} is a folder with other files in it ({shown}) and not a chargen run; "
                         "a new run needs a new or empty folder, so that nothing in it is overwritten", params="run_dir")


def resume_settings(run_dir: Path) -> tuple[str, dict[str, Any], ModelConfig, TrainConfig]:
    """Task name, task options, model and train configs recorded in a run directory."""
    config = checkpoint.load_config(run_dir, (*RUN_FIELDS, "task", "task_config", "train"))
    if not (run_dir / checkpoint.TRAINER).exists():
        raise UsageError(f"{run_dir}: has no trainer state (trainer.pt), so it cannot be resumed")
    try:
        task_options = dict(config["task_config"]["options"])
        model_cfg = ModelConfig.from_dict(config["model"])
        train_cfg = TrainConfig(**config["train"])
        return config["task"], task_options, model_cfg, train_cfg
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{run_dir / checkpoint.CONFIG}: cannot resume from it ({type(e).__name__}: {e})") from None
