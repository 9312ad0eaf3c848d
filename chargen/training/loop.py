"""The step loop of one ``fit`` call: schedule, forward, backward, clipping, update, logs, samples, evaluation,
budgets (steps, wall time, CPU time), early stop and stop signals, agreed across ranks once per step."""

from __future__ import annotations

import math
import signal
import time

from chargen.errors import RunInterrupted, TrainingError
from chargen.training.evaluation import Evaluation
from chargen.training.messages import Messages
from chargen.training.state import StopSignals, clip_gradients, learning_rate


class StepLoop(Evaluation, Messages):
    """Train until a budget, the task or early stopping ends the run."""

    def _train(self) -> None:
        cfg, run, task = self.cfg, self.run_state, self.task
        self.cb.on_start({
            "device": str(self.device), "parameters": sum(p.numel() for p in self.module.parameters()),
            "total_steps": self.budget.total_steps(), "time_limit": cfg.time_limit, "cpu_limit": cfg.cpu_limit,
            "start_step": run.step,
            "unit": task.unit, "run_dir": str(self.run_dir), "processes": self.world,
            "backend": self.group.backend if self.group else None,
        })
        self.model.train()
        window_loss, window_items, window_steps = 0.0, 0.0, 0
        started = time.perf_counter() - run.elapsed
        cpu_started = time.process_time() - run.cpu_seconds
        last_log = time.perf_counter()
        with StopSignals(announce=self.main) as stop:
            try:
                while self.budget.fraction(run.step, run.elapsed, run.cpu_seconds) < 1.0:
                    lr = learning_rate(cfg, run.step, self.budget.fraction(run.step, run.elapsed, run.cpu_seconds))
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr
                    step_started = time.perf_counter()
                    loss, items = task.train_loss(self.model, self.device)
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()  # under DDP this also averages the gradients of all ranks
                    norm = clip_gradients(self.module, cfg.clip)
                    loss_value, items, signum, elapsed, cpu = self._agree(
                        loss.item(), float(items), stop.received, time.perf_counter() - started,
                        time.process_time() - cpu_started,
                    )
                    if not (math.isfinite(loss_value) and math.isfinite(norm)):
                        raise TrainingError(self._nonfinite(loss_value, norm))
                    self.optimizer.step()
                    run.step += 1
                    run.elapsed, run.cpu_seconds = elapsed, cpu
                    window_loss += loss_value
                    window_items += items
                    window_steps += 1
                    run.units += items
                    run.train_seconds += time.perf_counter() - step_started
                    if run.step % cfg.log_every == 0:
                        now = time.perf_counter()
                        record = {"step": run.step, "split": "train", "loss": window_loss / window_steps, "lr": lr,
                                  "rate": window_items / max(now - last_log, 1e-9), "elapsed": run.elapsed,
                                  "cpu_seconds": round(run.cpu_seconds, 3)}
                        if self.main:
                            self._log("metrics.jsonl", record)
                        self.cb.on_step(run.step, {**record, "train_seconds": run.train_seconds})
                        window_loss, window_items, window_steps, last_log = 0.0, 0.0, 0, now
                    if run.step % cfg.sample_every == 0 and self.main:
                        text = task.sample_text(self.module, self.sample_generator, self.device)
                        if text is not None:
                            self._log("samples.jsonl", {"step": run.step, "loss": loss_value, "text": text})
                            self.cb.on_sample(run.step, loss_value, text)
                    if run.step % cfg.eval_every == 0:
                        self._evaluate()
                        self._save()
                        if task.should_stop(run.metrics):
                            break  # the task is done (e.g. the palindrome probe's held-out accuracy holds)
                        if cfg.early_stop is not None and run.evals_since_best >= cfg.early_stop:
                            run.stopped_early = True
                            self.cb.on_note(self._early_stop_message())
                            break
                    if signum:
                        if run.saved_step != run.step:
                            self._save()
                        raise RunInterrupted(self._stopped_message(signum), signum)
                if not run.metrics or run.step % cfg.eval_every:
                    self._evaluate()
                    self._save()
            except KeyboardInterrupt:
                raise RunInterrupted(self._aborted_message(), stop.aborted or signal.SIGINT) from None

    def _agree(self, loss: float, items: float, signum: int, elapsed: float,
               cpu: float) -> tuple[float, float, int, float, float]:
        """The step's loss, units, clocks, and whether to stop, the same on every rank.

        One small all-reduce per step: the mean loss (for logs and the non-finite check), the
        total units, the mean elapsed and CPU times (so a time budget ends every rank on the same
        step) and any stop signal (SIGTERM over SIGINT), so all ranks leave the loop together.
        """
        if self.group is None:
            return loss, items, signum, elapsed, cpu
        total_loss, items, sigint, sigterm, total_elapsed, total_cpu = self.group.sum(
            [loss, items, float(signum == signal.SIGINT), float(signum not in (0, signal.SIGINT)), elapsed, cpu]
        )
        agreed = signal.SIGTERM if sigterm else signal.SIGINT if sigint else 0
        return total_loss / self.world, items, int(agreed), total_elapsed / self.world, total_cpu / self.world
