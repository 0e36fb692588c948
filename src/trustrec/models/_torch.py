"""Shared machinery of torch recommenders: seeding, the epochs (run by the shared
:class:`~trustrec.models.training.EpochLoop` with progress and early stopping), saving the
network's weights through safetensors, and the capability hook of approximate unlearning."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from trustrec._device import resolve_device
from trustrec.models._base import FitOptions, Recommender

if TYPE_CHECKING:
    from trustrec.data import Ragged

__all__ = ["TorchRecommender"]


class _EpochsConfig(Protocol):
    """What the shared epoch loop reads from a torch model's config (each has ``epochs``)."""

    epochs: int


class TorchRecommender(Recommender):
    """A recommender whose fitted state includes ``net_`` (a torch module). Subclasses implement
    ``_build_net(train)`` and ``_train_epoch(epoch, rng) -> loss``."""

    capabilities = frozenset({"score", "stochastic_training"})
    devices = ("cpu", "cuda", "mps")

    def _build_net(self, train):
        raise NotImplementedError

    def _fit(self, train, options: FitOptions) -> None:
        import torch

        if options.threads:
            torch.set_num_threads(options.threads)
        torch.manual_seed(options.seed)  # weight init and dropout draw from torch's global generator
        rng = options.rng()
        device = resolve_device(options.device)
        self._prepare_training(train, rng)
        self.net_ = self._build_net(train).to(device)  # trains and serves there; saved from the CPU
        self.history_ = self._run_epochs(options, rng)
        self.net_.eval()
        self._release_training()

    @property
    def device_(self):
        """The torch device the network lives on (where it was fitted; the CPU after ``load``)."""
        return next(self.net_.parameters()).device

    def _tensor(self, array: np.ndarray):
        """``array`` as a tensor on the network's device."""
        import torch

        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device_)

    def _prepare_training(self, train, rng: np.random.Generator) -> None:
        """Hook: build whatever the epochs read (stored as private attributes, released after)."""

    def _release_training(self) -> None:
        for key in [k for k in vars(self) if k.startswith("_train")]:
            delattr(self, key)

    def _run_epochs(self, options: FitOptions, rng: np.random.Generator) -> dict[str, Any]:
        from trustrec.models.training import EpochLoop, early_stopping_from, progress_from

        def train_epoch(epoch: int) -> float:
            self.net_.train()
            return self._train_epoch(epoch, rng)

        validator = options.validator

        def score() -> float:  # called only with a validator (early_stopping_from)
            self.net_.eval()
            assert validator is not None
            return validator(self)

        stopper = early_stopping_from(
            options, score, snapshot=lambda: copy.deepcopy(self.net_.state_dict()), restore=self.net_.load_state_dict
        )
        bar = progress_from(options, f"fit {self.name}")
        epochs = cast("_EpochsConfig", self.config).epochs
        loop = EpochLoop(train_epoch, epochs, [stopper, bar, *self._callbacks(options)]).run()
        best = stopper.best_epoch if stopper is not None else 0
        return {
            "loss": loop.losses,
            "valid": [[e, s] for e, s in stopper.scores] if stopper is not None else [],
            "best_epoch": best or loop.epochs_run,
            "epochs_run": loop.epochs_run,
            "epoch_seconds": loop.epoch_seconds,
        }

    def _callbacks(self, options: FitOptions) -> list:
        """Hook: extra :class:`~trustrec.models.training.Callback` objects for the epoch loop."""
        return []

    def _train_epoch(self, epoch: int, rng: np.random.Generator) -> float:
        raise NotImplementedError

    # -- persistence: the network's tensors go into safetensors under "net_/<name>" --------
    def _state(self):
        arrays, values = {}, {}
        for key, value in vars(self).items():
            if not key.endswith("_"):
                continue
            if key == "net_":
                for name, tensor in value.state_dict().items():
                    arrays[f"net_/{name}"] = tensor.detach().cpu().numpy().copy()
            elif isinstance(value, np.ndarray):
                arrays[key] = np.ascontiguousarray(value)
            else:
                values[key] = value
        return arrays, values

    def _restore(self, arrays, values) -> None:
        import torch

        for key, value in values.items():
            setattr(self, key, value)
        for key, value in arrays.items():
            if not key.startswith("net_/"):
                setattr(self, key, value)
        self.net_ = self._build_net_from_state(values)
        state = {k[len("net_/") :]: torch.from_numpy(v.copy()) for k, v in arrays.items() if k.startswith("net_/")}
        self.net_.load_state_dict(state)
        self.net_.eval()

    def _build_net_from_state(self, values):
        raise NotImplementedError

    # -- approximate unlearning ----------------------------------------------------------------
    def _sequence_losses(self, histories, users: np.ndarray, rng: np.random.Generator):
        """Capability hook of approximate unlearning
        (:func:`trustrec.models.training.approximate_unlearn`): a (n_rows,) tensor, each row's mean training loss on its
        chronological sequence ``histories[i]`` of user ``users[i]``, differentiable through
        ``net_``; NaN for a row that gives no training example. Models without it cannot
        unlearn approximately."""
        raise NotImplementedError(
            f"{type(self).__name__} has no per-sequence training loss, so it cannot "
            "unlearn approximately; retrain without the users instead"
        )

    def can_unlearn(self) -> bool:
        """Whether :meth:`unlearn` (approximate unlearning) is available for this model."""
        from trustrec.models.training.unlearning import supports_approximate_unlearning

        return supports_approximate_unlearning(self)

    def unlearn(self, forget: Ragged, retain: Ragged, **kwargs: Any) -> Recommender:
        """Approximate unlearning in place, returning ``self``: the training method
        :func:`trustrec.models.training.approximate_unlearn` (see it for the keywords) applied
        to this model."""
        from trustrec.models.training.unlearning import approximate_unlearn

        return approximate_unlearn(self, forget, retain, **kwargs, in_place=True)


def batched(n: int, batch_size: int, rng: np.random.Generator | None = None) -> Iterator[np.ndarray]:
    order = rng.permutation(n) if rng is not None else np.arange(n)
    return (order[i : i + batch_size] for i in range(0, n, batch_size))
