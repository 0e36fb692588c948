"""The feedback-loop safety audit: seeded, and it shows popularity concentrating."""

import numpy as np
import pandas as pd
import pytest

from trustrec._config import Config
from trustrec.audit._safety import FeedbackLoopAudit
from trustrec.errors import ConfigError
from trustrec.models import FitOptions, Recommender, make_model, register_model
from trustrec.models.agents import acceptance_probabilities


class _FrozenConfig(Config):
    seed: int = 0


@register_model
class FrozenScores(Recommender):
    """Scores fixed by (user, item) whatever the training data: retraining changes nothing."""

    name = "frozen_scores_test"
    config_class = _FrozenConfig

    def _fit(self, train, options):
        self.table_ = np.random.default_rng(self.config.seed).random((train.n_users, train.n_items))

    def score(self, queries):
        return self.table_[np.maximum(queries.users, 0)]


def test_acceptance_probabilities_follow_the_stated_calibration():
    scores = np.array([[3.0, 1.0, 2.0, np.nan, 2.0]])
    p = acceptance_probabilities(scores, accept_max=0.5, sharpness=2.0)
    # ranks (ties take the worse rank): 3.0 -> 1, 2.0 -> 3 (both), 1.0 -> 4, NaN -> 5; q = 1 - (rank-1)/4
    np.testing.assert_allclose(p, 0.5 * np.array([[1.0, 0.25, 0.5, 0.0, 0.5]]) ** 2)


@pytest.fixture(scope="module")
def runs(attributed):
    _, split = attributed
    out = {}
    for name in ("most_popular", "item_knn"):
        model = make_model(name).fit(split, FitOptions(progress=False))
        out[name] = (model, FeedbackLoopAudit(rounds=3, n_boot=20).run(model, split))
    return split, out


def test_feedback_loop_is_deterministic_by_seed(runs):
    split, out = runs
    model, first = out["item_knn"]
    again = FeedbackLoopAudit(rounds=3, n_boot=20).run(model, split)
    assert again.estimates == first.estimates
    pd.testing.assert_frame_equal(again.evidence["rounds"], first.evidence["rounds"])
    other = FeedbackLoopAudit(rounds=3, n_boot=20, seed=1).run(model, split)
    assert not other.evidence["rounds"]["n_accepted"].equals(first.evidence["rounds"]["n_accepted"])


def test_feedback_loop_concentrates_popularity(runs):
    _, out = runs
    table = out["most_popular"][1].evidence["rounds"]
    assert list(table["round"]) == [0, 1, 2, 3]
    # MostPopular feeds the head: the training data concentrate on popular items round after round
    assert table.training_gini.is_monotonic_increasing and table.training_gini.iloc[-1] > table.training_gini.iloc[0]
    assert (table.n_train.diff().dropna() == table.n_accepted.iloc[:-1].to_numpy()).all()
    # ItemKNN's lists narrow: fewer catalog items are shown after the rounds
    knn = out["item_knn"][1]
    assert knn.estimates["coverage change [model]"].value < 0
    assert knn.estimates["training_gini change [model]"].value > 0


def test_feedback_loop_with_the_exposure_mitigation(attributed):
    _, split = attributed
    model = make_model("item_knn").fit(split, FitOptions(progress=False))
    result = FeedbackLoopAudit(rounds=2, n_boot=10, mitigation="exposure", mitigation_strength=0.8).run(model, split)
    table = result.evidence["rounds"]
    assert set(table.arm) == {"model", "model + xquad"}
    last = table.groupby("arm").tail(1).set_index("arm")
    assert last.loc["model + xquad", "tail_exposure_share"] > last.loc["model", "tail_exposure_share"]
    assert "coverage change [model + xquad]" in result.estimates


def test_feedback_loop_config_is_validated():
    with pytest.raises(ConfigError):
        FeedbackLoopAudit(user_model={"name": "nope"})
    with pytest.raises(ConfigError):
        FeedbackLoopAudit(accept_max=0)
    with pytest.raises(ConfigError):
        FeedbackLoopAudit(mitigation="calibrated")


def test_held_out_accuracy_is_flat_for_a_model_that_does_not_change(attributed):
    _, split = attributed
    model = FrozenScores().fit(split, FitOptions(progress=False))
    result = FeedbackLoopAudit(rounds=3, n_boot=20, accept_max=1.0, sharpness=1.0).run(model, split)
    table = result.evidence["rounds"]
    assert table.n_accepted.iloc[:-1].min() > 0  # items were accepted and joined the histories
    assert table["ndcg@10"].nunique() == 1 and table["hr@10"].nunique() == 1
    assert result.estimates["ndcg@10 change [model]"].value == 0
    assert "original" in result.settings["held_out_accuracy"]
    # the lists shown to users still exclude what they accepted: they change round after round
    assert table.coverage.nunique() > 1 or table.homogenisation.nunique() > 1
