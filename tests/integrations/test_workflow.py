"""One workflow across tools: masks travel between namings, resumed runs honour their settings."""

from __future__ import annotations

import pytest
import torch
from transformers import Trainer

from es_plugins import MASKS_FILENAME, MaskMismatchError, OMPConfig, SparsityConfigError, SparsityState, Sparsifier
from es_plugins.analysis.similarity import mask_similarity
from es_plugins.cli import main as es_cli
from es_plugins.naming import canonical_name
from tests.conftest import make_tiny_bert, save_checkpoint
from tests.integrations.test_transformers import RandomTokens, pruned_nonzeros, training_args


@pytest.fixture
def cli_masks(tmp_path):
    """Masks from ``es-plugins prune`` of a *base* checkpoint (``encoder.layer.N...`` names)."""
    classifier = make_tiny_bert()
    base = save_checkpoint(classifier.bert, tmp_path / "base")
    assert es_cli(["prune", str(base), str(tmp_path / "pruned"), "--sparsity", "0.5"]) == 0
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
    trainer(tmp_path, [SparsityCallback("omp", sparsity=0.4), ckpt], enable_checkpointing=True,
            max_steps=3).fit(TinyModule(), loader())
    path = str(next((tmp_path / "ckpt").glob("*.ckpt")))
    with pytest.raises(SparsityConfigError, match=r'"sparsity": 0.4.*"sparsity": 0.6'):
        trainer(tmp_path, [SparsityCallback("omp", sparsity=0.6)], max_steps=6).fit(TinyModule(), loader(),
                                                                                   ckpt_path=path)
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
