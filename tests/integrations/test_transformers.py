"""SparsityCallback, NearZeroMonitor and LotteryTicketRunner on the real transformers.Trainer."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from es_plugins import (
    CubicSchedule,
    LotteryConfig,
    MaskMismatchError,
    NMConfig,
    OMPConfig,
    SparsityConfigError,
    SparsityState,
)
from es_plugins.integrations.transformers import (
    LotteryTicketRunner,
    NearZeroMonitor,
    SparsityCallback,
    add_callback_first,
)
from es_plugins.masks import nm_compliance
from es_plugins.masks.state import MASKS_FILENAME
from es_plugins.masks.targets import resolve_targets
from tests.conftest import make_tiny_bert, make_tiny_gpt2


class RandomTokens(torch.utils.data.Dataset):
    def __init__(self, n: int = 64, seq: int = 12, vocab: int = 99, lm: bool = False, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, vocab, (n, seq), generator=gen)
        self.labels = self.ids.clone() if lm else (self.ids[:, 0] % 2)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]), "labels": self.labels[i]}


def training_args(out, **overrides) -> TrainingArguments:
    base = dict(
        output_dir=str(out),
        use_cpu=True,
        max_steps=6,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=2,
        learning_rate=5e-3,
        weight_decay=0.1,
        max_grad_norm=1.0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=0,
        dataloader_num_workers=0,
    )
    base.update(overrides)
    return TrainingArguments(**base)


def pruned_nonzeros(model, masks) -> int:
    return SparsityState(masks).count_nonzero_pruned(model)


def test_one_shot_omp_holds_through_bf16_accumulation_and_weight_decay(tmp_path):
    model = make_tiny_bert()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    callback = SparsityCallback("omp", sparsity=0.5)
    trainer = Trainer(
        model=model, args=training_args(tmp_path, bf16=True), train_dataset=RandomTokens(), callbacks=[callback]
    )
    trainer.train()
    state = callback.sparsifier.state
    assert state.num_pruned == round(0.5 * state.num_weights)
    assert pruned_nonzeros(model, state.masks) == 0
    kept_changed = any(
        not torch.equal(p.detach()[state.masks[n]], before[n][state.masks[n]])
        for n, p in model.named_parameters()
        if n in state.masks
    )
    assert kept_changed, "kept weights must train"
    logged = [row["sparsity/targets"] for row in trainer.state.log_history if "sparsity/targets" in row]
    assert len(logged) >= 6 and all(v == pytest.approx(0.5) for v in logged)
    assert not trainer.optimizer.optimizer._optimizer_step_post_hooks  # finalized at train end


def test_nm_2_4_on_gpt2_conv1d_through_training(tmp_path):
    model = make_tiny_gpt2()
    callback = SparsityCallback(NMConfig("2:4"))
    Trainer(
        model=model, args=training_args(tmp_path), train_dataset=RandomTokens(lm=True), callbacks=[callback]
    ).train()
    for target in resolve_targets(model):
        groups, ok = nm_compliance(target.param.detach(), 2, 4, target.in_axis)
        assert groups > 0 and ok == groups, target.name


def test_logged_metrics_reach_reporting_callbacks_when_first(tmp_path):
    seen = []

    class Recorder(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            seen.append(dict(logs))

    trainer = Trainer(
        model=make_tiny_bert(), args=training_args(tmp_path), train_dataset=RandomTokens(), callbacks=[Recorder()]
    )
    add_callback_first(trainer, SparsityCallback(OMPConfig(0.3)))
    trainer.train()
    assert any(row.get("sparsity/targets") == pytest.approx(0.3, abs=1e-4) for row in seen)


def test_resume_restores_bit_identical_masks(tmp_path):
    def run(model, **kw):
        cb = SparsityCallback("omp", sparsity=0.4, schedule=CubicSchedule(0, 4, 0.1, 1))
        trainer = Trainer(
            model=model,
            args=training_args(tmp_path, save_strategy="steps", save_steps=2, **kw),
            train_dataset=RandomTokens(),
            callbacks=[cb],
        )
        return trainer, cb

    trainer, cb = run(make_tiny_bert())
    trainer.train()
    full = {n: m.clone() for n, m in cb.sparsifier.state.masks.items()}
    saved = SparsityState.load(tmp_path / "checkpoint-2" / MASKS_FILENAME)
    assert saved.meta["global_step"] == 2 and saved.sparsity < 0.4  # mid-ramp

    torch.manual_seed(123)  # a different model: the resumed run must take everything from the checkpoint
    other = make_tiny_bert()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p))
    trainer2, cb2 = run(other)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        trainer2.train(resume_from_checkpoint=str(tmp_path / "checkpoint-4"))
    resumed = cb2.sparsifier.state
    assert resumed.num_pruned == round(0.4 * resumed.num_weights)
    assert all(torch.equal(resumed.masks[n], full[n]) for n in full)
    assert pruned_nonzeros(other, resumed.masks) == 0


def test_resume_without_masks_file_warns(tmp_path):
    args = training_args(tmp_path, save_strategy="steps", save_steps=3)
    Trainer(
        model=make_tiny_bert(),
        args=args,
        train_dataset=RandomTokens(),
        callbacks=[SparsityCallback("omp", sparsity=0.5)],
    ).train()
    (tmp_path / "checkpoint-3" / MASKS_FILENAME).unlink()
    cb = SparsityCallback("omp", sparsity=0.5)
    trainer = Trainer(model=make_tiny_bert(), args=args, train_dataset=RandomTokens(), callbacks=[cb])
    with pytest.warns(UserWarning, match="no sparsity_masks.safetensors was found"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-3"))
    assert cb.sparsifier.state.sparsity == pytest.approx(0.5)


def omp_trainer(args: TrainingArguments) -> Trainer:
    """A fresh tiny BERT pruned to 50 % by the callback (for runs that save, then resume)."""
    return Trainer(
        model=make_tiny_bert(),
        args=args,
        train_dataset=RandomTokens(),
        callbacks=[SparsityCallback("omp", sparsity=0.5)],
    )


def test_resume_with_partial_masks_is_an_error_not_regrowth(tmp_path):
    args = training_args(tmp_path, save_strategy="steps", save_steps=3)
    omp_trainer(args).train()
    path = tmp_path / "checkpoint-3" / MASKS_FILENAME
    saved = SparsityState.load(path)
    dropped = sorted(saved.masks)[:3]
    # the masks lose three layers and the record of which targets they covered
    SparsityState({n: m for n, m in saved.masks.items() if n not in dropped}, {"level": 0.5}).save(path)
    trainer = omp_trainer(args)
    with pytest.raises(
        MaskMismatchError, match=r"targets without a mask: .*3 in all; partial masks would let them regrow"
    ):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-3"))


def test_save_model_is_plain_checkpoint(tmp_path):
    from transformers import BertForSequenceClassification

    model = make_tiny_bert()
    keys = list(model.state_dict())
    trainer = Trainer(
        model=model,
        args=training_args(tmp_path),
        train_dataset=RandomTokens(),
        callbacks=[SparsityCallback("omp", sparsity=0.5)],
    )
    trainer.train()
    trainer.save_model(str(tmp_path / "final"))
    reloaded = BertForSequenceClassification.from_pretrained(tmp_path / "final")
    assert list(reloaded.state_dict()) == keys
    for name, param in model.named_parameters():
        assert torch.equal(reloaded.get_parameter(name), param.detach())
    zeros = sum(int((t.param == 0).sum()) for t in resolve_targets(reloaded))
    assert zeros == round(0.5 * sum(t.numel for t in resolve_targets(reloaded)))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(plan="lth"), "method must be one of"),
        (dict(plan="omp", sparsity=1.2), r"sparsity must be in \[0, 1\)"),
        (dict(plan="omp", pattern="2:4"), "unknown option"),
        (dict(plan="nm", n=4, m=4), "0 < N < M"),
        (dict(plan="nm", schedule=CubicSchedule(0, 10)), "gradual schedule needs an unstructured method"),
    ],
)
def test_bad_configuration_fails_at_construction(kwargs, message):
    with pytest.raises(SparsityConfigError, match=message):
        SparsityCallback(**kwargs)


def test_schedule_beyond_training_fails_before_any_step(tmp_path):
    model = make_tiny_bert()
    before = copy.deepcopy(model.state_dict())
    trainer = Trainer(
        model=model,
        args=training_args(tmp_path),
        train_dataset=RandomTokens(),
        callbacks=[SparsityCallback("omp", sparsity=0.5, schedule=CubicSchedule(0, 50))],
    )
    with pytest.raises(SparsityConfigError, match="end_step=50 is beyond training"):
        trainer.train()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_near_zero_monitor_matches_direct_count(tmp_path):
    model = make_tiny_bert()
    monitor = NearZeroMonitor(log_every=2, threshold=0.3, mode="relative")
    trainer = Trainer(
        model=model,
        args=training_args(tmp_path),
        train_dataset=RandomTokens(),
        callbacks=[SparsityCallback("omp", sparsity=0.3), monitor],
    )
    trainer.train()
    assert [row["step"] for row in monitor.history] == [0, 2, 4, 6]
    last = monitor.history[-1]
    targets = resolve_targets(model)
    total = near = 0
    for t in targets:
        w = t.param.detach()
        count = int((w.abs() < 0.3 * w.abs().mean()).sum())
        assert last[f"near_zero/{t.name}"] == pytest.approx(count / w.numel())
        total, near = total + w.numel(), near + count
    assert last["near_zero/overall"] == pytest.approx(near / total)
    assert last["near_zero/overall"] >= 0.3  # the pruned 30 % are exactly zero
    assert any(row.get("step") == 4 and "near_zero/overall" in row for row in trainer.state.log_history)
    with pytest.raises(SparsityConfigError, match="mode must be one of"):
        NearZeroMonitor(mode="log")
    with pytest.raises(SparsityConfigError, match="threshold must be > 0"):
        NearZeroMonitor(threshold=0)


# ------------------------------------------------------------------ lottery tickets
def make_trainer_factory(tmp_args, calls=None, fail_at=None):
    def make(model, out):
        if calls is not None:
            calls.append(out)
            if fail_at is not None and len(calls) == fail_at:
                raise KeyboardInterrupt("simulated interruption")
        return Trainer(model=model, args=training_args(out, max_steps=4, **tmp_args), train_dataset=RandomTokens())

    return make


def test_lottery_rounds_sparsity_nesting_and_rewind_exactness(tmp_path):
    model = make_tiny_bert()
    pretrained = {n: p.detach().clone() for n, p in model.named_parameters()}
    config = LotteryConfig(prune_fraction=0.5, rounds=2)
    seen_at_round_start = {}

    def make(model, out):
        # Trainer construction happens right after begin_round's rewind: snapshot weights here.
        seen_at_round_start[out] = {n: p.detach().clone() for n, p in model.named_parameters()}
        return Trainer(model=model, args=training_args(out, max_steps=4), train_dataset=RandomTokens())

    runner = LotteryTicketRunner(model, make, config, tmp_path / "lth", evaluate=lambda tr: {"loss": 1.0})
    records = runner.run()
    assert [r.round for r in records] == [0, 1, 2]
    n = sum(t.numel for t in resolve_targets(model))
    for record, rounds_done in zip(records, range(3)):
        assert record.sparsity == round((1 - 0.5**rounds_done) * n) / n
    masks = [SparsityState.load(tmp_path / "lth" / r.masks_file).masks for r in records[1:]]
    for name in masks[0]:
        assert not (masks[1][name] & ~masks[0][name]).any()  # nested: nothing revived
    for record, mask in zip(records[1:], masks):
        weights = seen_at_round_start[str(tmp_path / "lth" / f"round-{record.round}")]
        for name, value in weights.items():
            expected = pretrained[name] * mask[name] if name in mask else pretrained[name]
            assert torch.equal(value, expected), name  # w == w_rewind * mask, exactly
    assert pruned_nonzeros(model, masks[1]) == 0


def test_lottery_rewind_to_step_and_resume_after_interruption(tmp_path):
    config = LotteryConfig(prune_fraction=0.3, rounds=2, rewind=2)
    calls = []
    model = make_tiny_bert()
    runner = LotteryTicketRunner(model, make_trainer_factory({}, calls, fail_at=2), config, tmp_path / "lth")
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    assert (tmp_path / "lth" / "rewind_point.safetensors").is_file()
    from safetensors.torch import load_file

    rewind = load_file(str(tmp_path / "lth" / "rewind_point.safetensors"))
    assert any(
        not torch.equal(rewind[n], p.detach()) for n, p in make_tiny_bert().named_parameters()
    )  # trained 2 steps

    resumed = LotteryTicketRunner(make_tiny_bert(), make_trainer_factory({}, calls), config, tmp_path / "lth")
    assert resumed.ticket.current_round == 1
    records = resumed.run()
    assert [r.round for r in records] == [0, 1, 2]
    assert calls[-2:] == [str(tmp_path / "lth" / "round-1"), str(tmp_path / "lth" / "round-2")]


def test_lottery_resume_mid_round_from_trainer_checkpoint(tmp_path):
    config = LotteryConfig(prune_fraction=0.5, rounds=1)
    model = make_tiny_bert()

    class Stop(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if "round-1" in args.output_dir and state.global_step == 2:
                raise KeyboardInterrupt

    def make(model, out):
        trainer = Trainer(
            model=model,
            args=training_args(out, max_steps=4, save_strategy="steps", save_steps=2),
            train_dataset=RandomTokens(),
        )
        trainer.add_callback(Stop())
        return trainer

    with pytest.raises(KeyboardInterrupt):
        LotteryTicketRunner(model, make, config, tmp_path / "lth").run()
    assert (tmp_path / "lth" / "round-1" / "checkpoint-2" / MASKS_FILENAME).is_file()

    def make_plain(model, out):
        return Trainer(
            model=model,
            args=training_args(out, max_steps=4, save_strategy="steps", save_steps=2),
            train_dataset=RandomTokens(),
        )

    model2 = make_tiny_bert()
    records = LotteryTicketRunner(model2, make_plain, config, tmp_path / "lth").run()
    assert [r.round for r in records] == [0, 1]
    trainer_state = (tmp_path / "lth" / "round-1" / "checkpoint-4" / "trainer_state.json").read_text()
    assert '"global_step": 4' in trainer_state
    mask = SparsityState.load(tmp_path / "lth" / records[1].masks_file).masks
    assert pruned_nonzeros(model2, mask) == 0


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(prune_fraction=0.0), r"prune_fraction must be in \(0, 1\)"),
        (dict(prune_fraction=1.0), r"prune_fraction must be in \(0, 1\)"),
        (dict(rounds=0), "rounds must be an integer >= 1"),
        (dict(rewind="init"), "rewind must be one of 'pretrained'"),
        (dict(rewind=-3), "rewind must be 'pretrained' or a step"),
    ],
)
def test_lottery_bad_config(kwargs, message):
    with pytest.raises(SparsityConfigError, match=message):
        LotteryConfig(**kwargs)


def test_lottery_rewind_beyond_training_fails_before_training(tmp_path):
    model = make_tiny_bert()
    before = copy.deepcopy(model.state_dict())
    runner = LotteryTicketRunner(model, make_trainer_factory({}), LotteryConfig(0.2, 1, rewind=40), tmp_path / "lth")
    with pytest.raises(SparsityConfigError, match="rewind step 40 is beyond training"):
        runner.run()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_calibrated_method_through_the_callback(tmp_path):
    from es_plugins import WandaConfig

    with pytest.raises(SparsityConfigError, match="needs calibration"):
        SparsityCallback(WandaConfig(0.5))
    with pytest.raises(SparsityConfigError, match="gradual schedule"):
        SparsityCallback(
            "wanda", sparsity=0.5, calibration=torch.zeros(1, 4, dtype=torch.long), schedule=CubicSchedule(0, 4)
        )
    model = make_tiny_gpt2()
    calibration = torch.randint(1, 99, (4, 12), generator=torch.Generator().manual_seed(1))
    callback = SparsityCallback("wanda", pattern="2:4", calibration=calibration)
    Trainer(
        model=model, args=training_args(tmp_path), train_dataset=RandomTokens(lm=True), callbacks=[callback]
    ).train()
    state = callback.sparsifier.state
    assert state.meta["calibration"] == {"samples": 4, "seq_len": 12}
    assert pruned_nonzeros(model, state.masks) == 0
    for target in resolve_targets(model):
        groups, ok = nm_compliance(target.param.detach(), 2, 4, target.in_axis)
        assert ok == groups


def test_renamed_keywords_keep_working_with_a_warning():
    with pytest.warns(FutureWarning, match=r"every= is deprecated .* use log_every="):
        monitor = NearZeroMonitor(every=7)
    with pytest.warns(FutureWarning, match=r"per_layer= is deprecated .* use log_per_layer="):
        quiet = NearZeroMonitor(per_layer=False)
    assert monitor.every == 7 and quiet.per_layer is False
    with pytest.raises(SparsityConfigError, match="give log_every= only"):
        NearZeroMonitor(log_every=3, every=7)


@pytest.mark.parametrize("precision", [None, "bf16"])
def test_finetune_recipe_runs_where_asked_in_the_precision_asked(tiny_classifier_dir, tmp_path, precision):
    """The sweep's fine-tune: `--device cpu` keeps the Trainer on the CPU, `--bf16` reaches it
    (nothing forces the CPU any more; on a GPU machine the default is the Trainer's device)."""
    from es_plugins.integrations.hf_recipes import finetune_and_evaluate, load_classifier

    model, tokenizer = load_classifier(tiny_classifier_dir, 2)
    texts, labels = ["good film", "bad film"] * 8, [1, 0] * 8
    metrics, trainer = finetune_and_evaluate(
        model, tokenizer, (texts, labels), (texts, labels), tmp_path, max_steps=1, device="cpu", precision=precision
    )
    assert trainer.args.use_cpu and trainer.args.bf16 == (precision == "bf16")
    assert 0.0 <= metrics["accuracy"] <= 1.0
    with pytest.raises(SparsityConfigError, match="precision must be one of bf16, fp16"):
        finetune_and_evaluate(model, tokenizer, (texts, labels), (texts, labels), tmp_path, precision="int4")
