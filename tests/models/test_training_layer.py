"""The training layer: the epoch loop and its callbacks, approximate unlearning as a training
method, and the torch models running on the loop."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

# imported after the importorskip calls above (E402): without torch the module is skipped, not an error
from trustrec.data import split_leave_one_out  # noqa: E402
from trustrec.errors import ConfigError  # noqa: E402
from trustrec.models import FitOptions, make_model  # noqa: E402
from trustrec.models.training import (  # noqa: E402
    Callback,
    Checkpoint,
    EarlyStopping,
    EpochLoop,
    ProgressBar,
    approximate_unlearn,
    load_checkpoint,
    supports_approximate_unlearning,
)
from trustrec.testing import toy_dataset  # noqa: E402


@pytest.fixture(scope="module")
def split():
    return split_leave_one_out(toy_dataset(), short_users="train")


class _Net:
    """A 'model' whose state is one number; each epoch adds 1 to it."""

    def __init__(self):
        self.w = torch.zeros(2)

    def train_epoch(self, epoch):
        self.w = self.w + 1
        return float(10 - epoch)

    def snapshot(self):
        return self.w.clone()

    def restore(self, state):
        self.w = state


class _Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_fit_start(self, loop):
        self.events.append("start")

    def on_epoch_start(self, loop, epoch):
        self.events.append(f"e{epoch}")

    def on_epoch_end(self, loop, epoch, logs):
        self.events.append(f"end{epoch}:{logs.get('valid')}")

    def on_fit_end(self, loop):
        self.events.append("fit_end")


def test_loop_runs_every_epoch_and_calls_hooks_in_order():
    net, rec = _Net(), _Recorder()
    loop = EpochLoop(net.train_epoch, 3, [rec, ProgressBar("t", disable=True)]).run()
    assert loop.losses == [9.0, 8.0, 7.0] and loop.epochs_run == 3 and len(loop.epoch_seconds) == 3
    assert rec.events == ["start", "e1", "end1:None", "e2", "end2:None", "e3", "end3:None", "fit_end"]
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        EpochLoop(net.train_epoch, 0)


def test_early_stopping_stops_after_patience_and_restores_the_best_state():
    net = _Net()
    scores = iter([0.1, 0.5, 0.4, 0.3, 0.9])
    stopper = EarlyStopping(lambda: next(scores), patience=2, snapshot=net.snapshot, restore=net.restore)
    rec = _Recorder()
    loop = EpochLoop(net.train_epoch, 5, [stopper, rec]).run()
    assert loop.epochs_run == 4 and stopper.best_epoch == 2 and stopper.best_score == 0.5
    assert stopper.scores == [(1, 0.1), (2, 0.5), (3, 0.4), (4, 0.3)]
    assert net.w.tolist() == [2.0, 2.0]  # the state after epoch 2, not 4
    assert rec.events[-2] == "end4:0.3"  # callbacks after it see the score


def test_early_stopping_eval_every_and_eval_last():
    net = _Net()
    stopper = EarlyStopping(lambda: float(net.w[0]), eval_every=2, patience=1, eval_last=True)
    EpochLoop(net.train_epoch, 5, [stopper]).run()
    assert [e for e, _ in stopper.scores] == [2, 4, 5]
    net2 = _Net()
    stopper2 = EarlyStopping(lambda: float(net2.w[0]), eval_every=2)
    EpochLoop(net2.train_epoch, 5, [stopper2]).run()
    assert [e for e, _ in stopper2.scores] == [2, 4]


def test_no_restore_when_the_last_epoch_is_best():
    net, restored = _Net(), []
    stopper = EarlyStopping(lambda: float(net.w[0]), snapshot=net.snapshot, restore=restored.append)
    EpochLoop(net.train_epoch, 3, [stopper]).run()
    assert stopper.best_epoch == 3 and restored == []


def test_checkpoint_writes_best_and_last_and_they_reload(tmp_path):
    net = _Net()
    scores = iter([0.2, 0.7, 0.1])
    stopper = EarlyStopping(lambda: next(scores), patience=5, snapshot=net.snapshot, restore=net.restore)
    ckpt = Checkpoint(tmp_path / "ck", lambda: {"w": net.w, "tied": net.w})  # shared tensors are fine
    EpochLoop(net.train_epoch, 3, [stopper, ckpt]).run()
    best, last = (
        load_checkpoint(tmp_path / "ck" / "best.safetensors"),
        load_checkpoint(tmp_path / "ck" / "last.safetensors"),
    )
    assert best["w"].tolist() == [2.0, 2.0] and last["w"].tolist() == [3.0, 3.0]
    assert load_checkpoint(tmp_path / "ck")["w"].tolist() == [2.0, 2.0]  # the folder means best
    import json

    meta = json.loads((tmp_path / "ck" / "checkpoint.json").read_text())
    assert meta["best"] == {"epoch": 2, "loss": 8.0, "valid": 0.7} and meta["last"]["epoch"] == 3
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nothing")


def test_torch_model_checkpoint_reloads_into_the_network(split, tmp_path):
    model = make_model("bpr_mf", epochs=2, embedding_size=8)
    # the lambda looks net_ up when the checkpoint is written, not when the callbacks are made
    model._callbacks = lambda options: [Checkpoint(tmp_path, lambda: model.net_.state_dict())]  # noqa: PLW0108
    model.fit(split, FitOptions(seed=0, progress=False))
    state = load_checkpoint(tmp_path / "last.safetensors")
    for name, tensor in model.net_.state_dict().items():
        torch.testing.assert_close(state[name], tensor)


def test_torch_history_keys_are_unchanged(split):
    scores = iter([0.3, 0.2, 0.1])
    model = make_model("bpr_mf", epochs=3, embedding_size=8).fit(
        split, FitOptions(seed=0, progress=False, validator=lambda m: next(scores), patience=2)
    )
    h = model.history_
    assert set(h) == {"loss", "valid", "best_epoch", "epochs_run", "epoch_seconds"}
    assert h["valid"] == [[1, 0.3], [2, 0.2], [3, 0.1]] and h["best_epoch"] == 1 and h["epochs_run"] == 3


def test_approximate_unlearning_raises_the_forget_loss_on_a_copy(split):
    ds = split.dataset
    model = make_model("sasrec", epochs=3, embedding_size=8, inner_size=16, max_len=8, batch_size=16).fit(
        split, FitOptions(seed=0, progress=False)
    )
    assert supports_approximate_unlearning(model) and model.can_unlearn()
    seqs = split.train.by_user(ds.n_users)
    forget = np.array([0, 1, 2])
    retain = np.setdiff1d(np.flatnonzero(seqs.lengths >= 2), forget)
    before = {k: v.clone() for k, v in model.net_.state_dict().items()}

    def forget_loss(m):
        with torch.no_grad():
            losses = m._sequence_losses(seqs.take(forget), forget, np.random.default_rng(0))
        return float(np.nanmean(losses.numpy()))

    new = approximate_unlearn(
        model,
        seqs.take(forget),
        seqs.take(retain),
        forget_users=forget,
        retain_users=retain,
        steps=5,
        learning_rate=0.01,
        seed=0,
    )
    assert new is not model and new.unlearning_["steps_run"] >= 1
    assert forget_loss(new) > forget_loss(model)
    for k, v in model.net_.state_dict().items():  # the original is untouched
        torch.testing.assert_close(v, before[k])
    again = approximate_unlearn(
        model,
        seqs.take(forget),
        seqs.take(retain),
        forget_users=forget,
        retain_users=retain,
        steps=5,
        learning_rate=0.01,
        seed=0,
    )
    assert again.unlearning_["forget_loss"] == new.unlearning_["forget_loss"]  # seeded
    same = model.unlearn(
        seqs.take(forget),
        seqs.take(retain),
        forget_users=forget,
        retain_users=retain,
        steps=5,
        learning_rate=0.01,
        seed=0,
    )
    assert same is model and same.unlearning_["forget_loss"] == new.unlearning_["forget_loss"]


def test_approximate_unlearning_refuses_models_without_a_sequence_loss(split):
    ease = make_model("ease").fit(split, FitOptions(seed=0, progress=False))
    assert not supports_approximate_unlearning(ease)
    seqs = split.train.by_user(split.dataset.n_users)
    with pytest.raises(ConfigError, match="cannot unlearn approximately"):
        approximate_unlearn(ease, seqs.take([0]), seqs.take([1]))
    bpr = make_model("bpr_mf", epochs=1, embedding_size=8).fit(split, FitOptions(seed=0, progress=False))
    with pytest.raises(ConfigError, match="steps and batch_size"):
        approximate_unlearn(bpr, seqs.take([0]), seqs.take([1]), steps=0)
