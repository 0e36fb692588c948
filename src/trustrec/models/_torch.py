"""Shared machinery of torch recommenders: seeding, the epoch loop with progress and early
stopping, and saving the network's weights through safetensors."""

from __future__ import annotations

import copy
import time
from typing import Any, Callable

import numpy as np

from trustrec.models._base import FitOptions, Recommender

__all__ = ["TorchRecommender"]


class TorchRecommender(Recommender):
    """A recommender whose fitted state includes ``net_`` (a torch module). Subclasses implement
    ``_build_net(train)`` and ``_train_epoch(epoch, rng) -> loss``."""

    capabilities = frozenset({"score", "stochastic_training"})

    def _build_net(self, train):
        raise NotImplementedError

    def _fit(self, train, options: FitOptions) -> None:
        import torch

        if options.threads:
            torch.set_num_threads(options.threads)
        torch.manual_seed(options.seed)  # weight init and dropout draw from torch's global generator
        rng = options.rng()
        self._prepare_training(train, rng)
        self.net_ = self._build_net(train)
        self.history_ = self._run_epochs(options, rng)
        self.net_.eval()
        self._release_training()

    def _prepare_training(self, train, rng: np.random.Generator) -> None:
        """Hook: build whatever the epochs read (stored as private attributes, released after)."""

    def _release_training(self) -> None:
        for key in [k for k in vars(self) if k.startswith("_train")]:
            delattr(self, key)

    def _run_epochs(self, options: FitOptions, rng: np.random.Generator) -> dict[str, Any]:
        from tqdm.auto import tqdm

        epochs = self.config.epochs
        best_score, best_state, best_epoch, stale = -np.inf, None, 0, 0
        losses, scores, seconds = [], [], []
        bar = tqdm(range(1, epochs + 1), desc=f"fit {self.name}", disable=not options.progress,
                   unit="epoch", leave=False)
        for epoch in bar:
            self.net_.train()
            started = time.perf_counter()
            loss = float(self._train_epoch(epoch, rng))
            seconds.append(time.perf_counter() - started)
            losses.append(loss)
            postfix = {"loss": f"{loss:.4f}"}
            if options.validator is not None and epoch % options.eval_every == 0:
                self.net_.eval()
                score = float(options.validator(self))
                scores.append([epoch, score])
                postfix["valid"] = f"{score:.4f}"
                if score > best_score:
                    best_score, best_epoch, stale = score, epoch, 0
                    best_state = copy.deepcopy(self.net_.state_dict())
                else:
                    stale += 1
                    if stale >= options.patience:
                        bar.set_postfix(postfix)
                        break
            bar.set_postfix(postfix)
        bar.close()
        if best_state is not None:
            self.net_.load_state_dict(best_state)
        return {"loss": losses, "valid": scores, "best_epoch": best_epoch or len(losses),
                "epochs_run": len(losses), "epoch_seconds": seconds}

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
        state = {k[len("net_/"):]: torch.from_numpy(v.copy()) for k, v in arrays.items() if k.startswith("net_/")}
        self.net_.load_state_dict(state)
        self.net_.eval()

    def _build_net_from_state(self, values):
        raise NotImplementedError


def batched(n: int, batch_size: int, rng: np.random.Generator | None = None) -> Callable:
    order = rng.permutation(n) if rng is not None else np.arange(n)
    return (order[i : i + batch_size] for i in range(0, n, batch_size))
