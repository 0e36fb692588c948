"""Devices are honoured or refused with one clear error, never silently replaced by the CPU."""

import pytest
import torch

from trustrec._device import check_device_supported, resolve_device, resolve_dtype
from trustrec.errors import ConfigError
from trustrec.models import FitOptions, make_model
from trustrec.testing import toy_dataset

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")


@no_cuda
@pytest.mark.parametrize(
    "model,params",
    [("sasrec", {"epochs": 1}), ("bpr_mf", {"epochs": 1}), ("item_knn", {}), ("most_popular", {}), ("ease", {})],
)
def test_a_missing_device_is_one_clear_error_before_any_training(model, params):
    with pytest.raises(ConfigError, match="sees no CUDA device"):
        make_model(model, **params).fit(toy_dataset(), FitOptions(device="cuda", progress=False))


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "", "CPU", None])
def test_an_unknown_device_name_is_refused(device):
    with pytest.raises(ConfigError, match="device must be"):
        resolve_device(device)


def test_a_numpy_model_refuses_a_device_it_cannot_use(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="ItemKNN runs on cpu only"):
        check_device_supported("ItemKNN", "cuda", ("cpu",))
    with pytest.raises(ConfigError, match="has 1 CUDA device"):
        resolve_device("cuda:3")


def test_cpu_and_auto_are_honoured():
    model = make_model("sasrec", epochs=1, embedding_size=8, n_heads=1, n_blocks=1, inner_size=8, max_len=8)
    model.fit(toy_dataset(), FitOptions(device="auto" if not torch.cuda.is_available() else "cpu", progress=False))
    assert model.device_.type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_dtypes_are_named_or_refused():
    assert resolve_dtype("bfloat16") is torch.bfloat16
    with pytest.raises(ConfigError, match="dtype must be one of"):
        resolve_dtype("float8")


@no_cuda
def test_a_run_config_asking_for_a_missing_device_stops_before_reading_data(tmp_path):
    from trustrec.runs import run_experiment

    config = {
        "name": "gpu",
        "dataset": {"name": str(tmp_path / "never-read")},
        "model": {"name": "sasrec"},
        "fit": {"device": "cuda"},
    }
    with pytest.raises(ConfigError, match="sees no CUDA device"):
        run_experiment(config, tmp_path / "runs", progress=False, log=lambda *_: None)
    assert not (tmp_path / "runs" / "gpu").exists()


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")


@needs_cuda
@pytest.mark.parametrize("model,params", [("sasrec", {"epochs": 2, "max_len": 20}), ("bpr_mf", {"epochs": 2})])
def test_torch_models_train_and_answer_on_cuda(model, params, tmp_path):
    """On a CUDA machine: trained on the GPU (weights there), answers valid lists, and the saved
    model answers the same lists on the CPU."""
    from trustrec.data import split_leave_one_out

    split = split_leave_one_out(toy_dataset(), short_users="train")
    fitted = make_model(model, **params).fit(split, FitOptions(device="cuda", progress=False, seed=0))
    weights = [p for p in vars(fitted).values() if isinstance(p, torch.nn.Module)]
    assert weights and all(next(m.parameters()).is_cuda for m in weights)
    queries = split.eval_set("test").queries
    top = fitted.recommend(queries, 5)
    assert (top.items >= 0).all() and (top.items < split.dataset.n_items).all()
    from trustrec.models import Recommender

    on_cpu = Recommender.load(fitted.save(tmp_path / "m"))
    assert (on_cpu.recommend(queries, 5).items == top.items).mean() >= 0.9  # float kernels may break near-ties
