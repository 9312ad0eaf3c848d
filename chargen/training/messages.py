"""The one-line messages of a ``fit`` call that stops: a non-finite loss, a signal, an early stop, an abort."""

from __future__ import annotations

import math
import shlex

from chargen import checkpoint
from chargen.training.state import TrainingBase, signal_name


class Messages(TrainingBase):
    """What a stopped run says: where its checkpoint is and how to continue."""

    def _kept(self) -> str:
        saved = self.run_state.saved_step
        if saved is None:
            return "no checkpoint had been saved yet"
        return f"the checkpoint in {self.run_dir} (step {saved:,}) is kept"

    def _nonfinite(self, loss: float, norm: float) -> str:
        step = self.run_state.step + 1
        what = f"loss became {loss}" if not math.isfinite(loss) else f"gradient norm became {norm}"
        describe = self.task.describe_batch()
        where = f"; {describe}" if describe else ""
        return (f"{what} at step {step:,} (training batch {step:,}{where}); stopped before applying it, "
                f"{self._kept()} (try a lower lr or clip)")

    def _resume_hint(self) -> str:
        launcher = f"torchrun --nproc-per-node {self.world} -m chargen" if self.world > 1 else "chargen"
        return f"{launcher} train --resume {shlex.quote(str(self.run_dir))}"

    def _stopped_message(self, signum: int) -> str:
        return (f"stopped by {signal_name(signum)} at step {self.run_state.step:,}; checkpoint saved in "
                f"{self.run_dir}; continue with: {self._resume_hint()}")

    def _early_stop_message(self) -> str:
        run = self.run_state
        where = f" (in {self.run_dir / checkpoint.BEST})" if self.keep_best else ""
        return (f"early stop at step {run.step:,}: val_loss has not improved in {run.evals_since_best} evaluations; "
                f"the best, {run.best_val_loss:.4f}, was at step {run.best_step:,}{where}")

    def _aborted_message(self) -> str:
        return f"aborted at step {self.run_state.step:,} without saving; {self._kept()}"
