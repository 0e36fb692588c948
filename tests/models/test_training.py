import subprocess
import sys

import numpy as np
import pytest

from trustrec.data import split_leave_one_out
from trustrec.errors import ConfigError
from trustrec.models import FitOptions, ModelSpec, Recommender, available_models, make_model
from trustrec.testing import toy_dataset


@pytest.fixture(scope="module")
def split():
    return split_leave_one_out(toy_dataset(), short_users="train")


def test_early_stopping_stops_and_restores_best(split):
    scores = iter([0.1, 0.5, 0.4, 0.3, 0.2, 0.9, 0.9])
    snapshots = []

    def validator(model):
        snapshots.append(model.net_.item_emb.weight.detach().clone())
        return next(scores)

    model = make_model("sasrec", epochs=7, embedding_size=8, inner_size=16, max_len=8, batch_size=16)
    model.fit(split, FitOptions(validator=validator, patience=3, progress=False))
    assert model.history_["epochs_run"] == 5  # best at 2, then 3 checks without improvement
    assert model.history_["best_epoch"] == 2
    np.testing.assert_array_equal(model.net_.item_emb.weight.detach().numpy(), snapshots[1].numpy())


def test_validator_from_eval_layer_runs(split):
    from trustrec.eval import Validator

    v = Validator(split, "hr@5")
    model = make_model("bpr_mf", epochs=2, embedding_size=8).fit(
        split, FitOptions(validator=v, patience=1, progress=False)
    )
    assert len(model.history_["valid"]) >= 1 and 0.0 <= model.history_["valid"][0][1] <= 1.0


def test_model_spec_and_registry_errors():
    assert {"most_popular", "item_knn", "ease", "bpr_mf", "sasrec"} <= set(available_models())
    m = ModelSpec(name="sasrec", params={"epochs": 3}).build()
    assert m.config.epochs == 3 and not m.is_fitted()
    with pytest.raises(ConfigError, match=r"unknown model 'sasrek'.*did you mean sasrec"):
        make_model("sasrek")
    with pytest.raises(ConfigError, match=r"divisible by n_heads \(3\)"):
        make_model("sasrec", embedding_size=10, n_heads=3)
    with pytest.raises(ConfigError, match="pass a config or keyword arguments, not both"):
        model_cls = type(m)
        model_cls({"epochs": 1}, epochs=2)


def test_set_params_returns_fresh_unfitted(split):
    m = make_model("item_knn", k=5).fit(split, FitOptions(progress=False))
    other = m.set_params(k=7)
    assert other.config.k == 7 and not other.is_fitted() and m.config.k == 5


def test_load_checks_type(tmp_path, split):
    m = make_model("most_popular").fit(split, FitOptions(progress=False))
    m.save(tmp_path / "pop")
    from trustrec.errors import DataError
    from trustrec.models.classic import SASRec

    with pytest.raises(DataError, match="holds a MostPopular, not a SASRec"):
        SASRec.load(tmp_path / "pop")
    with pytest.raises(DataError, match="not a saved trustrec model"):
        Recommender.load(tmp_path)


def test_import_is_light():
    code = "import sys, trustrec, trustrec.data; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
