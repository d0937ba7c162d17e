"""One workflow across tools: masks travel between namings, resumed runs honour their settings."""

from __future__ import annotations

import pytest
import torch
from transformers import Trainer

from es_plugins import MaskMismatchError, OMPConfig, Sparsifier, SparsityConfigError, SparsityState
from es_plugins.analysis.similarity import mask_similarity
from es_plugins.cli import main as es_cli
from es_plugins.masks.naming import canonical_name
from es_plugins.masks.state import MASKS_FILENAME
from tests.conftest import make_tiny_bert, save_checkpoint
from tests.integrations.test_transformers import RandomTokens, pruned_nonzeros, training_args


@pytest.fixture
def cli_masks(tmp_path):
    """Masks from ``es-plugins prune`` of a *base* checkpoint (``encoder.layer.N...`` names)."""
    classifier = make_tiny_bert()
    base = save_checkpoint(classifier.bert, tmp_path / "base")
    assert es_cli(["prune", "--model", str(base), str(tmp_path / "pruned"), "--sparsity", "0.5"]) == 0
    return SparsityState.load(tmp_path / "pruned" / MASKS_FILENAME)


class Wrapper(torch.nn.Module):
    """A LightningModule-style attribute (``model.``) around the task model."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.model = inner


def _peft(model):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=2, target_modules=["query", "value"], task_type="SEQ_CLS"))


def _ddp_style():
    outer = torch.nn.Module()
    outer.module = make_tiny_bert()  # DistributedDataParallel's naming: module.<inner names>
    return outer


NAMINGS = {
    "task head": make_tiny_bert,
    "module attribute": lambda: Wrapper(make_tiny_bert()),
    "peft": lambda: _peft(make_tiny_bert()),
    "torch.compile": lambda: torch.compile(make_tiny_bert()),
    "ddp-style module. prefix": _ddp_style,
}


@pytest.mark.parametrize("naming", list(NAMINGS))
def test_cli_masks_apply_to_every_naming_of_the_same_weights(cli_masks, naming):
    model = NAMINGS[naming]()
    state = SparsityState(dict(cli_masks.masks), dict(cli_masks.meta))
    state.apply_(model)
    params = dict(model.named_parameters())
    assert set(state.masks) <= set(params)  # renamed to this model's names
    for name, mask in state.masks.items():
        original = [m for n, m in cli_masks.masks.items() if canonical_name(name).endswith(n)]
        assert len(original) == 1 and torch.equal(mask, original[0])
        assert int((params[name].detach()[~mask] != 0).sum()) == 0


def test_a_naming_that_fits_nothing_shows_the_closest_candidates(cli_masks, tiny_gpt2):
    with pytest.raises(MaskMismatchError, match=r"names not in the model: .*closest"):
        SparsityState(dict(cli_masks.masks)).validate(tiny_gpt2)


def test_masks_files_store_canonical_names_in_model_order(tmp_path):
    model = _peft(make_tiny_bert())
    sparsifier = Sparsifier(OMPConfig(0.5))
    sparsifier.setup(model)
    assert any(".base_layer." in n for n in sparsifier.state.masks)
    sparsifier.state.save(tmp_path / "m.safetensors")
    loaded = SparsityState.load(tmp_path / "m.safetensors")
    assert all(".base_layer." not in n and not n.startswith("base_model") for n in loaded.masks)
    assert list(loaded.masks) == [canonical_name(n) for n in sparsifier.state.masks]  # model order kept
    assert list(loaded.masks)[2].startswith("bert.encoder.layer.0.")
    assert list(loaded.masks)[-1].startswith("bert.encoder.layer.1.")


def test_cli_masks_drive_a_trainer_fine_tune_and_compare_with_its_checkpoint(tmp_path, cli_masks, capsys):
    from es_plugins.integrations.transformers import SparsityCallback

    model = make_tiny_bert()
    callback = SparsityCallback(state=SparsityState(dict(cli_masks.masks), dict(cli_masks.meta)))
    args = training_args(tmp_path / "run", save_strategy="steps", save_steps=3)
    Trainer(model=model, args=args, train_dataset=RandomTokens(), callbacks=[callback]).train()
    assert pruned_nonzeros(model, callback.sparsifier.state.masks) == 0
    trainer_masks = SparsityState.load(tmp_path / "run" / "checkpoint-3" / MASKS_FILENAME)
    assert mask_similarity(cli_masks.masks, trainer_masks.masks).overall.cosine == pytest.approx(1.0)
    capsys.readouterr()
    code = es_cli(["compare-masks", str(tmp_path / "pruned"), str(tmp_path / "run" / "checkpoint-3"), "--json"])
    assert code == 0
    import json

    report = json.loads(capsys.readouterr().out)
    layers = list(report["layers"]) if isinstance(report["layers"], dict) else [r["name"] for r in report["layers"]]
    assert layers[0].startswith("encoder.layer.0.attention.self.query")
    assert layers[-1].startswith("encoder.layer.1.output.dense")


# ----------------------------------------------------------------- settings honoured on resume
def _hf_run(tmp_path, sparsity, **callback_options):
    from es_plugins.integrations.transformers import SparsityCallback

    callback = SparsityCallback("omp", sparsity=sparsity, **callback_options)
    args = training_args(tmp_path, save_strategy="steps", save_steps=3)
    return Trainer(model=make_tiny_bert(), args=args, train_dataset=RandomTokens(), callbacks=[callback]), callback


def test_hf_resume_with_another_sparsity_is_an_error_unless_asked(tmp_path):
    trainer, _ = _hf_run(tmp_path, 0.4)
    trainer.train()
    resumed, _ = _hf_run(tmp_path, 0.6)
    with pytest.raises(SparsityConfigError, match=r'"sparsity": 0.4.*"sparsity": 0.6.*keep_saved_masks=True'):
        resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-3"))
    kept, callback = _hf_run(tmp_path, 0.6, keep_saved_masks=True)
    kept.train(resume_from_checkpoint=str(tmp_path / "checkpoint-3"))
    assert callback.sparsifier.state.sparsity == pytest.approx(0.4, abs=1e-3)


def test_lightning_resume_with_another_sparsity_is_an_error_unless_asked(tmp_path):
    import lightning.pytorch as pl

    from es_plugins.integrations.lightning import SparsityCallback
    from tests.integrations.test_lightning import TinyModule, loader, trainer

    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1)
    trainer(tmp_path, [SparsityCallback("omp", sparsity=0.4), ckpt], enable_checkpointing=True, max_steps=3).fit(
        TinyModule(), loader()
    )
    path = str(next((tmp_path / "ckpt").glob("*.ckpt")))
    with pytest.raises(SparsityConfigError, match=r'"sparsity": 0.4.*"sparsity": 0.6'):
        trainer(tmp_path, [SparsityCallback("omp", sparsity=0.6)], max_steps=6).fit(
            TinyModule(), loader(), ckpt_path=path
        )
    kept = SparsityCallback("omp", sparsity=0.6, keep_saved_masks=True)
    trainer(tmp_path, [kept], max_steps=6).fit(TinyModule(), loader(), ckpt_path=path)
    assert kept.sparsifier.state.sparsity == pytest.approx(0.4, abs=1e-2)


def test_accelerate_load_state_with_another_sparsity_is_an_error_unless_asked(tmp_path):
    from accelerate import Accelerator

    from es_plugins.integrations.accelerate import prepare_sparsity
    from tests.conftest import TinyBlocks

    def prepared(sparsity, **options):
        accelerator = Accelerator(cpu=True)
        model = TinyBlocks()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        model, optimizer = accelerator.prepare(model, optimizer)
        return accelerator, prepare_sparsity(accelerator, model, optimizer, "omp", sparsity=sparsity, **options)

    accelerator, _ = prepared(0.4)
    accelerator.save_state(str(tmp_path / "state"))
    accelerator, _ = prepared(0.6)
    with pytest.raises(SparsityConfigError, match=r'"sparsity": 0.4.*"sparsity": 0.6'):
        accelerator.load_state(str(tmp_path / "state"))
    accelerator, sparsifier = prepared(0.6, keep_saved_masks=True)
    accelerator.load_state(str(tmp_path / "state"))
    assert sparsifier.state.sparsity == pytest.approx(0.4, abs=1e-2)


# ----------------------------------------------------------------- metrics reach the logger
def _tensorboard_scalars(folder) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values: dict[str, list[float]] = {}
    for events in sorted(folder.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events.parent))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            values.setdefault(tag, []).extend(e.value for e in accumulator.Scalars(tag))
    return values


def test_hf_metrics_reach_tensorboard_with_the_one_line_setup(tmp_path):
    from es_plugins.integrations.transformers import SparsityCallback

    args = training_args(tmp_path / "run", report_to=["tensorboard"], logging_dir=str(tmp_path / "tb"))
    trainer = Trainer(
        model=make_tiny_bert(),
        args=args,
        train_dataset=RandomTokens(),
        callbacks=[SparsityCallback("omp", sparsity=0.5, log_per_layer=True)],
    )
    trainer.train()
    scalars = _tensorboard_scalars(tmp_path / "tb")
    assert scalars["train/sparsity/targets"] and all(v == pytest.approx(0.5) for v in scalars["train/sparsity/targets"])
    layer_tags = [t for t in scalars if t.startswith("train/sparsity/layer/")]
    assert (
        len(layer_tags) == 12 and "train/sparsity/layer/bert.encoder.layer.0.attention.self.query.weight" in layer_tags
    )


def test_accelerate_metrics_reach_its_trackers(tmp_path):
    from accelerate import Accelerator

    from es_plugins.integrations.accelerate import prepare_sparsity
    from tests.conftest import TinyBlocks

    accelerator = Accelerator(cpu=True, log_with="tensorboard", project_dir=str(tmp_path))
    accelerator.init_trackers("run")
    model = TinyBlocks()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    sparsifier = prepare_sparsity(accelerator, model, optimizer, "omp", sparsity=0.5, log_every=2)
    for _ in range(4):
        model(torch.randint(0, 50, (4, 6))).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    accelerator.end_training()
    sparsifier.finalize()
    scalars = _tensorboard_scalars(tmp_path)
    assert scalars["sparsity/targets"] == [pytest.approx(0.5)] * 2  # steps 2 and 4


def test_a_pruning_event_is_one_log_line():
    import logging

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("es_plugins")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)  # a library sets no level: the user does
    try:
        Sparsifier(OMPConfig(0.5)).setup(make_tiny_bert())
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    lines = [r.getMessage() for r in records]
    assert len(lines) == 1 and lines[0].startswith("pruned 12 layers (omp): 8192 of 16384 weights (50.00%) in ")


# ----------------------------------------------------------------- the final model carries its report
def _assert_carries_report(folder, sparsity: float) -> None:
    import json

    from transformers import AutoModelForSequenceClassification

    report = json.loads((folder / "sparsity_report.json").read_text())
    assert report["targets"]["sparsity"] == pytest.approx(sparsity, abs=1e-3)
    masks = SparsityState.load(folder / MASKS_FILENAME)
    card = (folder / "README.md").read_text()
    assert "## Sparsity (es-plugins)" in card and "This model is pruned" in card and '"method": "omp"' in card
    reloaded = AutoModelForSequenceClassification.from_pretrained(folder)  # a plain checkpoint
    masks.validate(reloaded)
    params = dict(reloaded.named_parameters())
    assert all(torch.equal(params[n].detach() == 0, ~m) for n, m in masks.masks.items())


def test_trainer_save_model_writes_masks_report_and_model_card(tmp_path):
    trainer, _ = _hf_run(tmp_path / "run", 0.5)
    trainer.train()
    trainer.save_model(str(tmp_path / "final"))
    _assert_carries_report(tmp_path / "final", 0.5)


def test_lightning_and_accelerate_final_saves_carry_the_report(tmp_path):
    import lightning.pytorch as pl
    from accelerate import Accelerator

    from es_plugins.integrations.accelerate import prepare_sparsity
    from es_plugins.integrations.lightning import SparsityCallback

    class BertModule(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = make_tiny_bert()

        def training_step(self, batch, batch_idx):
            return self.model(**batch).loss

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    module = BertModule()
    loader = torch.utils.data.DataLoader(RandomTokens(n=16), batch_size=8)
    pl.Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[SparsityCallback("omp", sparsity=0.4)],
    ).fit(module, loader)
    module.model.save_pretrained(tmp_path / "lightning")
    _assert_carries_report(tmp_path / "lightning", 0.4)

    accelerator = Accelerator(cpu=True)
    model = make_tiny_bert()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model, optimizer = accelerator.prepare(model, optimizer)
    sparsifier = prepare_sparsity(accelerator, model, optimizer, "omp", sparsity=0.3)
    sparsifier.finalize()
    accelerator.unwrap_model(model).save_pretrained(tmp_path / "accelerate")
    _assert_carries_report(tmp_path / "accelerate", 0.3)


def test_lightning_resume_without_the_callback_warns_that_weights_regrow(tmp_path):
    import warnings

    import lightning.pytorch as pl

    from es_plugins.integrations.lightning import SparsityCallback
    from tests.integrations.test_lightning import TinyModule, loader, trainer

    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1)
    trainer(tmp_path, [SparsityCallback("omp", sparsity=0.4), ckpt], enable_checkpointing=True, max_steps=3).fit(
        TinyModule(), loader()
    )
    path = str(next((tmp_path / "ckpt").glob("*.ckpt")))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer(tmp_path, [], max_steps=4).fit(TinyModule(), loader(), ckpt_path=path)
    assert any("resume WITH this callback, or every pruned weight regrows" in str(w.message) for w in caught)
    # and with the callback, the masks come back (under the new key and the key of older checkpoints)
    checkpoint = torch.load(path, weights_only=False)
    key = next(k for k in checkpoint["callbacks"] if k.startswith("es_plugins.SparsityCallback"))
    checkpoint["callbacks"]["es_plugins.SparsityCallback[sparsity]"] = checkpoint["callbacks"].pop(key)
    torch.save(checkpoint, tmp_path / "old.ckpt")
    resumed = SparsityCallback("omp", sparsity=0.4)
    trainer(tmp_path, [resumed], max_steps=4).fit(TinyModule(seed=3), loader(), ckpt_path=str(tmp_path / "old.ckpt"))
    saved = SparsityState.from_state_dict(checkpoint["callbacks"]["es_plugins.SparsityCallback[sparsity]"])
    assert all(torch.equal(resumed.sparsifier.state.masks[n], m) for n, m in saved.masks.items())


def test_a_later_finalize_points_the_final_save_at_the_newer_masks(tmp_path):
    model = make_tiny_bert()
    first = Sparsifier(OMPConfig(0.3))
    first.setup(model)
    first.finalize()
    second = Sparsifier(OMPConfig(0.6))
    second.setup(model)
    second.finalize()
    model.save_pretrained(tmp_path / "final")
    assert SparsityState.load(tmp_path / "final" / MASKS_FILENAME).sparsity == pytest.approx(0.6, abs=1e-3)
