"""Evaluation and checkpoints in one ``fit`` call: metrics on rank 0 for every rank, the best val_loss so far (early
stop reads it), and saving the last checkpoint with ``best/`` beside it when a task keeps the best."""

from __future__ import annotations

from chargen import checkpoint
from chargen.runtime import rng_state
from chargen.training.state import TrainingBase, to_cpu


class Evaluation(TrainingBase):
    """Evaluate, keep the best, save."""

    def _evaluate(self) -> None:
        run = self.run_state

        def on_main() -> dict[str, float]:
            return {k: float(v) for k, v in self.task.evaluate(self.module, self.device).items()}

        run.metrics = self._collective(on_main)
        self.improved = run.metrics["val_loss"] < run.best_val_loss
        if self.improved:
            run.best_val_loss, run.best_step, run.evals_since_best = run.metrics["val_loss"], run.step, 0
        else:
            run.evals_since_best += 1
        if self.main:
            self._log("metrics.jsonl", {"step": run.step, "split": "val", **run.metrics})
        self.cb.on_eval(run.step, run.metrics)

    def _save(self) -> None:
        run = self.run_state
        local = to_cpu({"rng": rng_state(), "task": self.task.state_dict()})
        ranks = self.group.all_gather(local) if self.group else [local]

        def on_main() -> None:
            trainer = {
                "step": run.step,
                "elapsed": run.elapsed,
                "cpu_seconds": run.cpu_seconds,
                "world_size": self.world,
                "ranks": ranks,  # per rank: RNG states and data position
                "optimizer": self.optimizer.state_dict(),
                "sample_generator": self.sample_generator.get_state(),
                "best_val_loss": run.best_val_loss,
                "best_step": run.best_step,
                "evals_since_best": run.evals_since_best,
                "metrics": run.metrics,
            }
            meta = {"step": run.step, "elapsed_s": round(run.elapsed, 1), "metrics": run.metrics,
                    "best_val_loss": run.best_val_loss, "best_step": run.best_step}
            if self.keep_best and self.improved and run.best_step == run.step:
                # best/ first: killed between the two saves, best/ is never worse than what trainer.pt records
                checkpoint.save(self.run_dir / checkpoint.BEST, {**self.config, **meta}, self.module)
            checkpoint.save(self.run_dir, {**self.config, **meta}, self.module, trainer)

        self._collective(on_main)
        run.saved_step = run.step
        self.cb.on_save(run.step, self.run_dir)
