"""BPR-MF (Rendle et al., UAI 2009): matrix factorisation trained on (user, positive, sampled
negative) triples with the pairwise logistic loss. Users unknown at fit time are folded in as the
mean of their history items' factors."""

from __future__ import annotations

import numpy as np
from pydantic import NonNegativeFloat, PositiveFloat, PositiveInt

from trustrec._config import Config
from trustrec.data import Dataset, QueryBatch
from trustrec.models._registry import register_model
from trustrec.models._torch import TorchRecommender, batched

__all__ = ["BPRMF", "BPRConfig"]


class BPRConfig(Config):
    """Hyper-parameters of :class:`BPRMF`.

    Parameters
    ----------
    embedding_size : int
        Dimension of the user and item factors (default 64).
    epochs : int
        Training epochs (default 30); each epoch visits every distinct (user, item) training pair
        once, with one freshly sampled negative item.
    batch_size : int
        (user, positive, negative) triples per Adam step (default 4096).
    learning_rate : float
        Adam learning rate (default 5e-3).
    reg : float
        L2 penalty on the user and item factors used in each batch, divided by the batch size
        (default 1e-4; 0 disables it).
    """

    embedding_size: PositiveInt = 64
    epochs: PositiveInt = 30
    batch_size: PositiveInt = 4096
    learning_rate: PositiveFloat = 5e-3
    reg: NonNegativeFloat = 1e-4  # L2 on the factors used in each batch


def _make_net(n_users: int, n_items: int, d: int):
    import torch
    from torch import nn

    class MF(nn.Module):
        def __init__(self):
            super().__init__()
            self.user = nn.Embedding(n_users, d)
            self.item = nn.Embedding(n_items, d)
            self.item_bias = nn.Embedding(n_items, 1)
            nn.init.normal_(self.user.weight, std=0.1)
            nn.init.normal_(self.item.weight, std=0.1)
            nn.init.zeros_(self.item_bias.weight)

        def forward(self, u, i):
            return (self.user(u) * self.item(i)).sum(-1) + self.item_bias(i).squeeze(-1)

    del torch
    return MF()


@register_model
class BPRMF(TorchRecommender):
    """BPR-MF (Rendle et al., UAI 2009): matrix factorisation with an item bias, trained with the
    pairwise logistic loss on (user, positive, sampled negative) triples.

    A user's score for an item is ``user . item + item_bias``. Users unknown at fit time are
    folded in as the mean factors of their history items.

    Parameters
    ----------
    config : BPRConfig, mapping or None
        Hyper-parameters (see :class:`BPRConfig`); None: the defaults.
    **kwargs
        The same hyper-parameters as keywords (not together with ``config``).
    """

    name = "bpr_mf"
    config_class = BPRConfig
    config: BPRConfig
    capabilities = frozenset({"score", "user_embeddings", "stochastic_training", "unlearnable"})

    def _build_net(self, train: Dataset):
        return _make_net(train.n_users, train.n_items, self.config.embedding_size)

    def _build_net_from_state(self, values):
        return _make_net(self.n_users_, self.n_items_, self.config.embedding_size)

    def _prepare_training(self, train: Dataset, rng) -> None:
        inter = train.interactions
        key = np.unique(inter.user * train.n_items + inter.item)
        self._train_users, self._train_items = key // train.n_items, key % train.n_items
        self._train_keys = key

    def _sample_negatives(self, users, rng) -> np.ndarray:
        neg = rng.integers(0, self.n_items_, len(users))
        for _ in range(5):  # resample the few negatives that are in fact positives
            clash = np.isin(users * self.n_items_ + neg, self._train_keys, assume_unique=False)
            if not clash.any():
                break
            neg[clash] = rng.integers(0, self.n_items_, int(clash.sum()))
        return neg

    def _train_epoch(self, epoch: int, rng) -> float:
        import torch
        import torch.nn.functional as F

        if not hasattr(self, "_train_opt"):
            self._train_opt = torch.optim.Adam(self.net_.parameters(), lr=self.config.learning_rate)
        negatives = self._sample_negatives(self._train_users, rng)
        users = torch.from_numpy(self._train_users)
        pos = torch.from_numpy(self._train_items)
        neg = torch.from_numpy(negatives)
        total = 0.0
        device = self.device_
        for batch in batched(len(users), self.config.batch_size, rng):
            rows = torch.from_numpy(batch)
            u, i, j = (t[rows].to(device) for t in (users, pos, neg))
            diff = self.net_(u, i) - self.net_(u, j)
            reg = (
                self.config.reg
                * (self.net_.user(u).pow(2).sum() + self.net_.item(i).pow(2).sum() + self.net_.item(j).pow(2).sum())
                / len(rows)
            )
            loss = -F.logsigmoid(diff).mean() + reg
            self._train_opt.zero_grad(set_to_none=True)
            loss.backward()
            self._train_opt.step()
            total += float(loss.detach()) * len(rows)
        return total / len(users)

    def _sequence_losses(self, histories, users, rng):
        """Per row, the mean BPR loss of user ``users[i]``'s items ``histories[i]`` against one
        sampled negative each (NaN for rows shorter than 2, as sequence models), for
        ``TorchRecommender.unlearn``."""
        import torch
        import torch.nn.functional as F

        users = np.asarray(users, np.int64)
        if len(users) != len(histories) or (users < 0).any() or (users >= self.n_users_).any():
            raise ValueError(f"{type(self).__name__}: unlearning needs the fit-time user index of every sequence")
        rows = histories.row_ids()
        u = users[rows]
        i = histories.values
        j = rng.integers(0, self.n_items_, len(i))
        clash = j == i
        j[clash] = (j[clash] + 1) % self.n_items_
        ut, it, jt = (self._tensor(np.array(a, np.int64)) for a in (u, i, j))
        loss = -F.logsigmoid(self.net_(ut, it) - self.net_(ut, jt))
        sums = torch.zeros(len(histories), dtype=loss.dtype, device=loss.device).index_add(0, self._tensor(rows), loss)
        n = self._tensor(histories.lengths).to(loss.dtype)
        return torch.where(n >= 2, sums / n.clamp(min=1), torch.full_like(sums, float("nan")))

    def user_embeddings(self, queries: QueryBatch) -> np.ndarray:
        """Known users: their factors; unknown users: the mean factors of their history."""
        import torch

        queries = self._prepare(queries)
        with torch.inference_mode():
            item = self.net_.item.weight.detach().cpu().numpy()
            out = np.zeros((len(queries), item.shape[1]), dtype=np.float32)
            known = queries.users >= 0
            out[known] = self.net_.user.weight.detach().cpu().numpy()[queries.users[known]]
            h = queries.histories
            unknown = np.flatnonzero(~known & (h.lengths > 0))
            if len(unknown):
                sub = h.take(unknown)
                sums = np.zeros((len(unknown), item.shape[1]), dtype=np.float32)
                np.add.at(sums, sub.row_ids(), item[sub.values])
                out[unknown] = sums / sub.lengths[:, None]
        return out

    def score(self, queries: QueryBatch) -> np.ndarray:
        import torch

        emb = self.user_embeddings(queries)
        with torch.inference_mode():
            item = self.net_.item.weight.detach().cpu().numpy()
            bias = self.net_.item_bias.weight.detach().cpu().numpy().ravel()
        return (emb @ item.T + bias).astype(np.float64)
