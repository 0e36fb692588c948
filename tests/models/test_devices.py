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
