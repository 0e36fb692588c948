"""One epoch loop with callbacks, shared by the torch classic models and the LLM recommenders.

:class:`EpochLoop` calls ``train_epoch(epoch) -> loss`` for ``epochs`` epochs and tells its
callbacks what happens (the shape of transformers' ``TrainerCallback``): ``on_fit_start``,
``on_epoch_start``, ``on_step_end`` (when the epoch function calls :meth:`EpochLoop.step`, e.g.
once per batch), ``on_epoch_end`` (in the order given; any of them may set
``loop.should_stop``) and ``on_fit_end``. The loop itself only times the epochs and records
their losses; what an epoch means (which RNG it draws from, which batches) stays with the model,
so a model moved onto the loop draws the same random numbers in the same order as before.

Callbacks: :class:`EarlyStopping` (a score every ``eval_every`` epochs, stop after ``patience``
checks without improvement, snapshot and restore of the best state through functions the model
supplies), :class:`ProgressBar` (tqdm over epochs or steps) and :class:`Checkpoint` (the
trainable state of the last and the best epoch as safetensors files in a folder;
:func:`load_checkpoint` reads one back).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trustrec.models._base import FitOptions

__all__ = [
    "Callback",
    "Checkpoint",
    "EarlyStopping",
    "EpochLoop",
    "ProgressBar",
    "early_stopping_from",
    "load_checkpoint",
    "progress_from",
]


class Callback:
    """Hooks of :class:`EpochLoop`; every one does nothing by default."""

    def on_fit_start(self, loop: EpochLoop) -> None:
        """Before the first epoch."""

    def on_epoch_start(self, loop: EpochLoop, epoch: int) -> None:
        """Before ``train_epoch(epoch)``."""

    def on_step_end(self, loop: EpochLoop) -> None:
        """After each :meth:`EpochLoop.step` call of the epoch function (one per batch)."""

    def on_epoch_end(self, loop: EpochLoop, epoch: int, logs: dict[str, Any]) -> None:
        """After ``train_epoch(epoch)``; ``logs`` holds ``loss`` and what earlier callbacks added
        (``valid``, ``improved``); set ``loop.should_stop = True`` to end training."""

    def on_fit_end(self, loop: EpochLoop) -> None:
        """After the last epoch run (also after an early stop)."""


class EpochLoop:
    """Runs ``train_epoch(epoch) -> loss`` for epochs ``1..epochs`` with ``callbacks`` (None ones skipped).

    After :meth:`run`: ``losses`` (one float per epoch run), ``epoch_seconds`` (time spent in
    ``train_epoch``), ``epochs_run`` and ``logs`` (one dict per epoch).

    Parameters
    ----------
    train_epoch : callable
        Trains one epoch, given its number (from 1), and returns the epoch's loss.
    epochs : int
        Number of epochs to run at most (at least 1).
    callbacks : iterable of Callback or None
        Callbacks told of the loop's events, in order; None entries are skipped.

    Raises
    ------
    ValueError
        When ``epochs`` is less than 1.
    """

    def __init__(self, train_epoch: Callable[[int], float], epochs: int, callbacks: Iterable[Callback | None] = ()):
        if epochs < 1:
            raise ValueError(f"EpochLoop: epochs must be >= 1, got {epochs}")
        self.train_epoch = train_epoch
        self.epochs = int(epochs)
        self.callbacks = [c for c in callbacks if c is not None]
        self.losses: list[float] = []
        self.epoch_seconds: list[float] = []
        self.logs: list[dict[str, Any]] = []
        self.epoch = 0
        self.should_stop = False

    @property
    def epochs_run(self) -> int:
        return len(self.losses)

    def step(self) -> None:
        """Called by the epoch function after each step (batch): tells the callbacks."""
        for cb in self.callbacks:
            cb.on_step_end(self)

    def run(self) -> EpochLoop:
        self.should_stop = False
        for cb in self.callbacks:
            cb.on_fit_start(self)
        try:
            for epoch in range(1, self.epochs + 1):
                self.epoch = epoch
                for cb in self.callbacks:
                    cb.on_epoch_start(self, epoch)
                started = time.perf_counter()
                loss = float(self.train_epoch(epoch))
                self.epoch_seconds.append(time.perf_counter() - started)
                self.losses.append(loss)
                logs: dict[str, Any] = {"epoch": epoch, "loss": loss}
                self.logs.append(logs)
                for cb in self.callbacks:
                    cb.on_epoch_end(self, epoch, logs)
                if self.should_stop:
                    break
        finally:
            for cb in self.callbacks:
                cb.on_fit_end(self)
        return self

    def callback(self, kind: type) -> Any:
        """The first callback of type ``kind`` (None if there is none)."""
        return next((c for c in self.callbacks if isinstance(c, kind)), None)


class EarlyStopping(Callback):
    """Scores the model every ``eval_every`` epochs (and after the last one with
    ``eval_last``), keeps a snapshot of the best-scoring state and stops after ``patience``
    checks without improvement (a strictly higher score); at the end it restores the best state
    unless the last epoch run is the best.

    ``score()`` scores the model as it is now (the model puts itself in eval mode);
    ``snapshot()`` returns a copy of the state to keep (detached from training) and
    ``restore(state)`` puts it back. After fitting: ``scores`` (``(epoch, score)`` pairs),
    ``best_epoch`` (0 when never scored) and ``best_score``. Each check adds ``valid`` and
    ``improved`` to the epoch's logs.

    Parameters
    ----------
    score : callable
        Scores the model as it is now; higher is better.
    eval_every : int
        Epochs between two checks (at least 1).
    patience : int
        Checks without improvement after which the loop stops.
    snapshot : callable or None
        Returns a copy of the state to keep at an improvement; None: keep nothing.
    restore : callable or None
        Puts a kept state back at the end; None: restore nothing.
    eval_last : bool
        Whether to also check after the last epoch when it is not a multiple of ``eval_every``.

    Raises
    ------
    ValueError
        When ``eval_every`` is less than 1.
    """

    def __init__(
        self,
        score: Callable[[], float],
        *,
        eval_every: int = 1,
        patience: int = 5,
        snapshot: Callable[[], Any] | None = None,
        restore: Callable[[Any], None] | None = None,
        eval_last: bool = False,
    ):
        if eval_every < 1:
            raise ValueError(f"EarlyStopping: eval_every must be >= 1, got {eval_every}")
        self.score, self.eval_every, self.patience = score, int(eval_every), int(patience)
        self.snapshot, self.restore, self.eval_last = snapshot, restore, eval_last

    def on_fit_start(self, loop: EpochLoop) -> None:
        self.scores: list[tuple[int, float]] = []
        self.best_score, self.best_epoch, self.stale, self.best_state = -math.inf, 0, 0, None

    def on_epoch_end(self, loop: EpochLoop, epoch: int, logs: dict[str, Any]) -> None:
        if not (epoch % self.eval_every == 0 or (self.eval_last and epoch == loop.epochs)):
            return
        score = float(self.score())
        self.scores.append((epoch, score))
        logs["valid"] = score
        logs["improved"] = score > self.best_score
        if logs["improved"]:
            self.best_score, self.best_epoch, self.stale = score, epoch, 0
            if self.snapshot is not None:
                self.best_state = self.snapshot()
        else:
            self.stale += 1
            if self.stale >= self.patience:
                loop.should_stop = True

    def on_fit_end(self, loop: EpochLoop) -> None:
        if self.best_state is not None and self.restore is not None and self.best_epoch != loop.epochs_run:
            self.restore(self.best_state)
        self.best_state = None  # the snapshot is not kept after fitting


class ProgressBar(Callback):
    """A tqdm bar over epochs (``unit="epoch"``) or over steps (``unit`` anything else, with
    ``steps_per_epoch``: one tick per :meth:`EpochLoop.step`), showing the loss and the
    validation score; ``disable`` shows nothing.

    Parameters
    ----------
    desc : str
        The bar's label.
    unit : str
        ``"epoch"`` for one tick per epoch; anything else ticks once per step.
    steps_per_epoch : int or None
        Steps in an epoch, for the bar's total when counting steps (None counts 1).
    disable : bool
        Whether to show nothing.
    leave : bool
        Whether the bar stays on screen when done.
    """

    def __init__(
        self,
        desc: str,
        *,
        unit: str = "epoch",
        steps_per_epoch: int | None = None,
        disable: bool = False,
        leave: bool = False,
    ):
        self.desc, self.unit, self.steps_per_epoch = desc, unit, steps_per_epoch
        self.disable, self.leave = disable, leave

    def on_fit_start(self, loop: EpochLoop) -> None:
        from tqdm.auto import tqdm

        total = loop.epochs if self.unit == "epoch" else loop.epochs * (self.steps_per_epoch or 1)
        self.bar = tqdm(total=total, desc=self.desc, disable=self.disable, unit=self.unit, leave=self.leave)

    def on_step_end(self, loop: EpochLoop) -> None:
        if self.unit != "epoch":
            self.bar.update(1)

    def on_epoch_end(self, loop: EpochLoop, epoch: int, logs: dict[str, Any]) -> None:
        postfix: dict[str, Any] = {"epoch": epoch} if self.unit != "epoch" else {}
        postfix["loss"] = f"{logs['loss']:.4f}"
        if "valid" in logs:
            postfix["valid"] = f"{logs['valid']:.4f}"
        self.bar.set_postfix(postfix)
        if self.unit == "epoch":
            self.bar.update(1)

    def on_fit_end(self, loop: EpochLoop) -> None:
        self.bar.close()


class Checkpoint(Callback):
    """Writes the trainable state (``state()``: a dict of name -> tensor) to ``folder`` as
    safetensors: ``last.safetensors`` after every ``every``-th epoch and after the last one,
    ``best.safetensors`` whenever an :class:`EarlyStopping` earlier in the callback list reports
    an improvement; ``checkpoint.json`` records the epoch, loss and score of each file.
    Read a file back with :func:`load_checkpoint`.

    Parameters
    ----------
    folder : str or Path
        Folder to write to (created when missing).
    state : callable
        Returns the trainable state to write, a dict of name -> tensor.
    every : int
        Epochs between two writes of ``last.safetensors`` (at least 1).
    best : bool
        Whether to write ``best.safetensors`` at each improvement.
    last : bool
        Whether to write ``last.safetensors``.

    Raises
    ------
    ValueError
        When ``every`` is less than 1.
    """

    def __init__(
        self, folder: str | Path, state: Callable[[], dict], *, every: int = 1, best: bool = True, last: bool = True
    ):
        if every < 1:
            raise ValueError(f"Checkpoint: every must be >= 1, got {every}")
        self.folder, self.state, self.every, self.best, self.last = Path(folder), state, int(every), best, last

    def on_fit_start(self, loop: EpochLoop) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.written: dict[str, dict[str, Any]] = {}

    def _write(self, name: str, logs: dict[str, Any]) -> None:
        import json

        from safetensors.torch import save_file

        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in self.state().items()}
        tmp = self.folder / f".{name}.safetensors.tmp"
        save_file(tensors, str(tmp))
        tmp.replace(self.folder / f"{name}.safetensors")
        self.written[name] = {k: logs[k] for k in ("epoch", "loss", "valid") if k in logs}
        (self.folder / "checkpoint.json").write_text(json.dumps(self.written, indent=2))

    def on_epoch_end(self, loop: EpochLoop, epoch: int, logs: dict[str, Any]) -> None:
        if self.best and logs.get("improved"):
            self._write("best", logs)
        if self.last and (epoch % self.every == 0 or epoch == loop.epochs or loop.should_stop):
            self._write("last", logs)


def load_checkpoint(path: str | Path, device: str = "cpu") -> dict:
    """The tensors of a :class:`Checkpoint` file (``best.safetensors`` / ``last.safetensors``,
    or the folder, meaning its ``best`` file if there is one, else ``last``).

    Parameters
    ----------
    path : str or Path
        A checkpoint file, or a :class:`Checkpoint` folder.
    device : str
        Device to load the tensors onto.

    Returns
    -------
    dict
        Name -> tensor.

    Raises
    ------
    FileNotFoundError
        When there is no checkpoint file at ``path``.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        path = path / "best.safetensors" if (path / "best.safetensors").exists() else path / "last.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"load_checkpoint: no checkpoint file at {path}")
    return load_file(str(path), device=device)


def early_stopping_from(
    options: FitOptions,
    score: Callable[[], float],
    *,
    snapshot: Callable[[], Any] | None = None,
    restore: Callable[[Any], None] | None = None,
    eval_last: bool = False,
) -> EarlyStopping | None:
    """The :class:`EarlyStopping` that ``FitOptions`` asks for (its ``validator``,
    ``eval_every`` and ``patience``), or None without a validator.

    Parameters
    ----------
    options : FitOptions
        The fit options; their ``eval_every`` and ``patience`` are used.
    score : callable
        Scores the model as it is now (higher is better), at each check.
    snapshot, restore : callable or None
        As for :class:`EarlyStopping`.
    eval_last : bool
        Whether to also check after the last epoch.

    Returns
    -------
    EarlyStopping or None
        The callback, or None when ``options`` has no ``validator``.
    """
    if getattr(options, "validator", None) is None:
        return None
    return EarlyStopping(
        score,
        eval_every=options.eval_every,
        patience=options.patience,
        snapshot=snapshot,
        restore=restore,
        eval_last=eval_last,
    )


def progress_from(
    options: FitOptions, desc: str, *, unit: str = "epoch", steps_per_epoch: int | None = None, leave: bool = False
) -> ProgressBar:
    """A :class:`ProgressBar`, shown when ``FitOptions.progress`` is set.

    Parameters
    ----------
    options : FitOptions
        The fit options; the bar is disabled unless their ``progress`` is set.
    desc, unit, steps_per_epoch, leave
        As for :class:`ProgressBar`.

    Returns
    -------
    ProgressBar
        The callback.
    """
    return ProgressBar(desc, unit=unit, steps_per_epoch=steps_per_epoch, disable=not options.progress, leave=leave)
