"""A prefix trie of catalog titles in a tokenizer's token ids, for constrained decoding.

Each non-empty title is tokenized (no special tokens) and ended with an *end marker* (the
tokenizer's eos token id by default); the complete sequence maps back to catalog item indices.

* Duplicate titles (distinct items, same text, hence the same token sequence) share one leaf:
  ``items_at(leaf)`` lists all their item indices, ascending. Decoding resolves a leaf to its
  *lowest* item index (``item_at``); ``n_duplicates`` counts the items that can never be
  returned for that reason, ``duplicate_groups`` lists the groups.
* Empty titles (empty or whitespace only, or tokenizing to nothing) are left out of the trie:
  those items can never be recommended; ``n_empty`` counts them, ``empty_items`` lists them.

For vectorised decoding every node stores its allowed next-token ids as a sorted ``int64``
numpy array (``allowed[node]``) and the matching child node ids (``children[node]``); the child
reached by the end marker is a leaf (``leaf_items[leaf]`` non-empty). ``subtree_mass`` sums
per-item weights over every node's subtree (the text-free assistant of D3's decoding).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["TitleTrie"]


class TitleTrie:
    """Prefix trie over tokenized catalog titles; node 0 is the root.

    ``titles[i]`` is item ``i``'s title. ``end_id`` defaults to ``tokenizer.eos_token_id``.
    ``prefix`` is prepended to every title before tokenizing (e.g. ``" "`` when the model
    should write a leading space); its tokens become part of every sequence.

    Parameters
    ----------
    titles : sequence of str
        Item ``i``'s title at position ``i``; None, empty or whitespace-only titles are left out.
    tokenizer : transformers.PreTrainedTokenizerBase
        Tokenizer whose token ids the trie holds (titles tokenized without special tokens).
    end_id : int or None
        Token id that ends every title's sequence (default None: ``tokenizer.eos_token_id``).
    prefix : str
        Text prepended to every title before tokenizing (default empty).

    Raises
    ------
    ValueError
        When there is no end marker (no ``end_id`` and no eos token), or a title tokenizes to
        the end marker.
    """

    def __init__(self, titles: Sequence[str], tokenizer: Any, *, end_id: int | None = None, prefix: str = ""):
        if end_id is None:
            end_id = tokenizer.eos_token_id
        if end_id is None:
            raise ValueError("TitleTrie: the tokenizer has no eos token; pass end_id")
        self.end_id = int(end_id)
        self.n_items = len(titles)
        self.empty_items: list[int] = []
        child_maps: list[dict[int, int]] = [{}]
        leaf_of_node: dict[int, list[int]] = {}
        self.sequences: dict[int, tuple[int, ...]] = {}  # leaf -> token ids (incl. end marker)
        texts = [(i, t) for i, t in enumerate(titles) if t is not None and str(t).strip()]
        self.empty_items = sorted(set(range(len(titles))) - {i for i, _ in texts})
        encoded = tokenizer([prefix + str(t) for _, t in texts], add_special_tokens=False)["input_ids"] if texts else []
        max_len = 0
        for (item, _), ids in zip(texts, encoded):
            ids = [int(x) for x in ids]
            if not ids:
                self.empty_items.append(item)
                continue
            if self.end_id in ids:
                raise ValueError(f"TitleTrie: title of item {item} tokenizes to the end marker {self.end_id}")
            seq = [*ids, self.end_id]
            node = 0
            for tok in seq:
                nxt = child_maps[node].get(tok)
                if nxt is None:
                    nxt = len(child_maps)
                    child_maps[node][tok] = nxt
                    child_maps.append({})
                node = nxt
            leaf_of_node.setdefault(node, []).append(item)
            self.sequences[node] = tuple(seq)
            max_len = max(max_len, len(seq))
        self.empty_items.sort()
        self.n_nodes = len(child_maps)
        self.max_length = max_len  # longest sequence, end marker included
        self.allowed: list[np.ndarray] = []
        self.children: list[np.ndarray] = []
        for cmap in child_maps:
            toks = np.array(sorted(cmap), dtype=np.int64)
            self.allowed.append(toks)
            self.children.append(np.array([cmap[t] for t in toks.tolist()], dtype=np.int64))
        self.leaf_items: dict[int, list[int]] = {leaf: sorted(items) for leaf, items in leaf_of_node.items()}
        self._child_maps = child_maps

    # -- queries ---------------------------------------------------------------------------
    @property
    def n_empty(self) -> int:
        return len(self.empty_items)

    @property
    def duplicate_groups(self) -> list[list[int]]:
        return [items for items in self.leaf_items.values() if len(items) > 1]

    @property
    def n_duplicates(self) -> int:
        """Items hidden behind a lower-indexed item with the same title."""
        return sum(len(items) - 1 for items in self.leaf_items.values())

    @property
    def n_sequences(self) -> int:
        """Distinct token sequences (= distinct recommendable items)."""
        return len(self.leaf_items)

    def child(self, node: int, token: int) -> int:
        """The child of ``node`` by ``token``; -1 when ``token`` is not allowed there."""
        if node < 0:
            return -1
        return self._child_maps[node].get(int(token), -1)

    def walk(self, tokens: Sequence[int]) -> int:
        """The node reached from the root by ``tokens``; -1 when they leave the trie."""
        node = 0
        for tok in tokens:
            node = self.child(node, tok)
            if node < 0:
                return -1
        return node

    def allowed_tokens(self, tokens: Sequence[int]) -> list[int]:
        """Allowed next tokens after the generated ``tokens`` (for ``prefix_allowed_tokens_fn``)."""
        node = self.walk(tokens)
        return [] if node < 0 else self.allowed[node].tolist()

    def items_at(self, leaf: int) -> list[int]:
        return self.leaf_items.get(leaf, [])

    def item_at(self, leaf: int) -> int:
        """The item a finished sequence resolves to: the lowest index among same-title items."""
        return self.leaf_items[leaf][0]

    def open_counts(self, excluded: np.ndarray) -> np.ndarray:
        """``(n_rows, n_nodes)`` counts of the recommendable leaves under each node once the items
        marked in ``excluded`` (``(n_rows, n_items)`` bool) are taken out: a leaf is out when the
        item it resolves to (:meth:`item_at`) is excluded. A node with count 0 leads to no item
        this row may get, so a search that never enters such nodes searches exactly the trie of
        the remaining titles (same log-probabilities)."""
        excluded = np.asarray(excluded, dtype=bool)
        if excluded.ndim != 2 or excluded.shape[1] != self.n_items:
            raise ValueError(f"TitleTrie.open_counts: excluded must be (n_rows, {self.n_items}); got {excluded.shape}")
        below, leaf_items = self._ancestry()
        open_leaves = ~excluded[:, leaf_items]  # (rows, leaves)
        return np.asarray((below @ open_leaves.T.astype(np.int64)).T)

    def _ancestry(self):
        """Sparse (n_nodes, n_leaves) matrix: node is the leaf or one of its ancestors; and the
        item each leaf resolves to."""
        if getattr(self, "_below", None) is None:
            from scipy import sparse

            leaves = sorted(self.leaf_items)
            rows, cols = [], []
            for j, leaf in enumerate(leaves):
                node = 0
                rows.append(0)
                cols.append(j)
                for tok in self.sequences[leaf]:
                    node = self._child_maps[node][tok]
                    rows.append(node)
                    cols.append(j)
            self._below = sparse.csr_matrix(
                (np.ones(len(rows), dtype=np.int64), (rows, cols)), shape=(self.n_nodes, len(leaves))
            )
            self._leaf_item = np.array([self.leaf_items[leaf][0] for leaf in leaves], dtype=np.int64)
        return self._below, self._leaf_item

    def subtree_mass(self, item_weights: np.ndarray, excluded: np.ndarray | None = None) -> np.ndarray:
        """Per row, the total weight of the recommendable items below every node.

        A leaf's mass is the summed weight of the items at it (all items sharing that title),
        less the items marked in ``excluded``; a leaf whose resolving item (:meth:`item_at`) is
        excluded is closed (as in :meth:`open_counts`) and weighs 0. A node's mass is the sum over
        the leaves below it, so the mass reached through a child of node ``v`` is the mass of
        the items whose sequences continue through that child. Computed as one sparse product
        with the node-leaf ancestry matrix, hence exact sums (no cumulative-sum differences that
        would lose small masses) and no loop over items; used by the text-free assistant of
        :func:`~trustrec.models.llm._constrained.constrained_beam_search`.

        Parameters
        ----------
        item_weights : numpy.ndarray
            ``(n_rows, n_items)`` weights, e.g. per-user item probabilities.
        excluded : numpy.ndarray or None
            ``(n_rows, n_items)`` bool mask of items that contribute nothing (default None).

        Returns
        -------
        numpy.ndarray
            ``(n_rows, n_nodes)`` float64 masses; column 0 (the root) is each row's total.

        Raises
        ------
        ValueError
            When ``item_weights`` or ``excluded`` is not ``(n_rows, n_items)``.
        """
        weights = np.asarray(item_weights, dtype=np.float64)
        if weights.ndim != 2 or weights.shape[1] != self.n_items:
            raise ValueError(
                f"TitleTrie.subtree_mass: item_weights must be (n_rows, {self.n_items}); got {weights.shape}"
            )
        below, leaf_item = self._ancestry()
        if excluded is not None:
            excluded = np.asarray(excluded, dtype=bool)
            if excluded.shape != weights.shape:
                raise ValueError(f"TitleTrie.subtree_mass: excluded must be {weights.shape}; got {excluded.shape}")
            weights = np.where(excluded, 0.0, weights)
        leaf_mass = np.asarray((self._leaf_members() @ weights.T).T)  # (rows, leaves)
        if excluded is not None:
            leaf_mass = leaf_mass * ~excluded[:, leaf_item]  # closed leaves: unreachable
        return np.asarray((below @ leaf_mass.T).T)

    def _leaf_members(self):
        """Sparse (n_leaves, n_items) matrix: item sits at the leaf (leaves in ``_ancestry`` order)."""
        if getattr(self, "_members", None) is None:
            from scipy import sparse

            leaves = sorted(self.leaf_items)
            rows = [j for j, leaf in enumerate(leaves) for _ in self.leaf_items[leaf]]
            cols = [item for leaf in leaves for item in self.leaf_items[leaf]]
            self._members = sparse.csr_matrix(
                (np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=(len(leaves), self.n_items)
            )
        return self._members

    def items_of(self, tokens: Sequence[int]) -> list[int]:
        """All items whose complete sequence (title tokens + end marker) is ``tokens``."""
        node = self.walk(tokens)
        return [] if node < 0 else self.items_at(node)
