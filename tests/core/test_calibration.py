"""Wanda and SparseGPT (unstructured, N:M, refinement) on tiny random models."""

from __future__ import annotations

import copy

import pytest
import torch

from es_plugins import (
    MaskMismatchError,
    NMConfig,
    OMPConfig,
    SparseGPTConfig,
    SparsityConfigError,
    SparsityPlan,
    SparsityState,
    TargetSpec,
    WandaConfig,
    sparsify_,
)
from es_plugins.engines.calibration.stats import add_gram_
from es_plugins.masks import nm_compliance
from es_plugins.masks.targets import resolve_targets
from es_plugins.methods import compute_masks
from es_plugins.methods.sparsegpt import sparsegpt_prune
from es_plugins.methods.wanda import wanda_keep_mask
from tests.conftest import make_tiny_bert, make_tiny_gpt2

CALIB = torch.randint(0, 99, (8, 16), generator=torch.Generator().manual_seed(0))


def pruned_nonzeros(model, state) -> int:
    return state.count_nonzero_pruned(model)


@pytest.mark.parametrize("make", [make_tiny_gpt2, make_tiny_bert])
@pytest.mark.parametrize(
    "config", [WandaConfig(0.5), WandaConfig(0.3), SparseGPTConfig(0.5), SparseGPTConfig(0.37, blocksize=16)]
)
def test_unstructured_exact_counts(make, config):
    model = make()
    state = sparsify_(model, SparsityPlan(config), calibration=CALIB)
    targets = resolve_targets(model)
    assert set(state.masks) == {t.name for t in targets}
    for t in targets:  # per layer exact (SparseGPT: cumulative block quotas; Wanda: per row)
        assert int((~state.masks[t.name]).sum()) == round(config.sparsity * t.numel), t.name
    assert pruned_nonzeros(model, state) == 0


@pytest.mark.parametrize("sparsity", [0.25, 0.3])
def test_wanda_prunes_per_output_row(sparsity):
    model = make_tiny_gpt2()
    state = sparsify_(model, SparsityPlan(WandaConfig(sparsity)), calibration=CALIB)
    for t in resolve_targets(model):
        pruned_per_row = (~state.masks[t.name]).sum(dim=t.in_axis).float()  # Conv1D: rows of the transpose
        assert ((pruned_per_row - sparsity * t.param.shape[t.in_axis]).abs() < 1).all()


@pytest.mark.parametrize("make", [make_tiny_gpt2, make_tiny_bert])
@pytest.mark.parametrize("method", [WandaConfig, SparseGPTConfig])
@pytest.mark.parametrize("pattern", ["2:4", "4:8"])
def test_nm_compliance(make, method, pattern):
    model = make()
    n, m = map(int, pattern.split(":"))
    state = sparsify_(model, SparsityPlan(method(pattern=pattern)), calibration=CALIB)
    for t in resolve_targets(model):
        groups, ok = nm_compliance(t.param.detach(), n, m, t.in_axis)
        assert groups and ok == groups
        assert int((~state.masks[t.name]).sum()) == t.numel * (m - n) // m


def test_wanda_prefers_weights_on_loud_inputs():
    weight = torch.ones(2, 4)
    norms = torch.tensor([100.0, 1.0, 4.0, 9.0])  # squared norms
    keep = wanda_keep_mask(weight, 1, norms, 0.5, None)
    assert keep.tolist() == [[True, False, False, True]] * 2


def _layer_problem(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(32, 32, generator=gen)
    x = torch.randn(512, 32, generator=gen) @ mix  # correlated inputs: where reconstruction pays
    w = torch.randn(24, 32, generator=gen)
    return x, w, x.t() @ x / x.shape[0]


def test_sparsegpt_reconstruction_beats_magnitude_on_the_same_mask():
    x, w, hessian = _layer_problem()
    magnitude_keep = torch.zeros_like(w, dtype=torch.bool).view(-1)
    magnitude_keep[w.abs().view(-1).argsort(descending=True)[: w.numel() // 2]] = True
    magnitude_keep = magnitude_keep.view_as(w)
    refined, kept = sparsegpt_prune(w, 1, hessian, 0.5, keep=magnitude_keep, blocksize=8)
    assert torch.equal(kept, magnitude_keep) and bool((refined[~kept] == 0).all())
    err_magnitude = (x @ (w * magnitude_keep).t() - x @ w.t()).norm()
    err_refined = (x @ refined.t() - x @ w.t()).norm()
    assert err_refined < 0.95 * err_magnitude  # measured 912 vs 997 (least squares optimum: 724)
    own, own_keep = sparsegpt_prune(w, 1, hessian, 0.5, blocksize=8)
    assert (x @ own.t() - x @ w.t()).norm() < err_magnitude
    assert int((~own_keep).sum()) == w.numel() // 2


def _textbook_sparsegpt(w, hessian, sparsity, nm=None, keep=None, blocksize=128, damp=0.01):
    """SparseGPT with no lazy updates: each column's error goes at once to every later column;
    the mask per column block (exact cumulative quota, stable-sort ties) or per N:M group."""
    h = hessian.clone()
    h.diagonal().add_(damp * h.diagonal().mean())
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    w, (rows, cols) = w.clone(), w.shape
    pruned = torch.zeros_like(w, dtype=torch.bool) if keep is None else ~keep
    total, done = round(sparsity * w.numel()), 0

    def scores(i, j):
        return w[:, i:j] ** 2 / hinv.diagonal()[i:j] ** 2

    for i in range(cols):
        if keep is None and nm is None and i % blocksize == 0:
            j = min(i + blocksize, cols)
            quota = round(total * j / cols) - done
            done += quota
            lowest = scores(i, j).reshape(-1).sort(stable=True).indices[:quota]
            pruned[:, i:j] = torch.zeros(rows * (j - i), dtype=torch.bool).index_fill_(0, lowest, True).view(rows, -1)
        if keep is None and nm is not None and i % nm[1] == 0:
            order = scores(i, i + nm[1]).sort(dim=1, descending=True, stable=True).indices
            pruned[:, i : i + nm[1]] = torch.ones(rows, nm[1], dtype=torch.bool).scatter_(1, order[:, : nm[0]], False)
        error = w[:, i] * pruned[:, i] / hinv[i, i]
        w[:, i:] -= torch.outer(error, hinv[i, i:])
    return w.masked_fill_(pruned, 0.0), ~pruned


@pytest.mark.parametrize(
    "case",
    [
        {"sparsity": 0.5},
        {"sparsity": 0.37},
        {"sparsity": 0.5, "nm": (2, 4)},
        {"sparsity": 0.5, "nm": (3, 6)},  # M does not divide the block size: groups must stay aligned
        {"sparsity": 0.0, "keep": "magnitude"},
    ],
)
def test_sparsegpt_equals_the_unblocked_algorithm(case):
    """The blocked, lazily updated loop (column blocks, sub-blocks, transposed layout) computes
    what the plain column-by-column algorithm computes: the same mask, the same weights."""
    x, _, _ = _layer_problem(1)
    x = torch.cat([x, x @ torch.randn(32, 64, generator=torch.Generator().manual_seed(2))], dim=1)  # 96 inputs
    w = torch.randn(24, 96, generator=torch.Generator().manual_seed(3))
    hessian = x.t() @ x / x.shape[0]
    keep = None
    if case.get("keep"):
        keep = w.abs() > w.abs().median()
    args = (case["sparsity"], case.get("nm"), keep)
    ours, ours_keep = sparsegpt_prune(w, 1, hessian, *args, blocksize=64)
    expected, expected_keep = _textbook_sparsegpt(w, hessian, *args, blocksize=64)
    # Two different op orders: equal in exact arithmetic, not bit for bit. A near-tie may choose
    # another weight on another CPU, so the masks must agree almost everywhere and the layer's
    # reconstruction error must match; the weights are compared where nothing diverged.
    assert float((ours_keep == expected_keep).float().mean()) >= 0.99
    loss = lambda pruned: float(((pruned - w) @ x.t()).pow(2).sum())
    assert loss(ours) == pytest.approx(loss(expected), rel=1e-2)
    if torch.equal(ours_keep, expected_keep):
        torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)
    assert int(ours_keep.sum()) == int(expected_keep.sum()) or case.get("nm")
    assert bool((ours[~ours_keep] == 0).all())
    if case.get("nm"):
        n, m = case["nm"]
        assert nm_compliance(ours, n, m, 1) == (24 * 96 // m,) * 2


def test_refinement_keeps_the_given_mask_exactly():
    model = make_tiny_gpt2()
    reference = copy.deepcopy(model)
    omp = sparsify_(reference, SparsityPlan(OMPConfig(0.5)))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    state = sparsify_(model, SparsityPlan(SparseGPTConfig(0.5)), calibration=CALIB, masks=omp)
    for name, mask in omp.masks.items():
        assert torch.equal(state.masks[name], mask)
    assert pruned_nonzeros(model, state) == 0
    params = dict(model.named_parameters())
    changed = [n for n in omp.masks if not torch.equal(params[n][omp.masks[n]], before[n][omp.masks[n]])]
    assert changed, "kept weights must be reconstructed, not just masked"
    assert state.meta["refined_from"]["method"]["method"] == "omp"


def test_refinement_of_nm_mask_keeps_that_mask_with_a_pattern_config():
    model = make_tiny_bert()
    nm = sparsify_(copy.deepcopy(model), SparsityPlan(NMConfig("2:4")))
    state = sparsify_(model, SparsityPlan(SparseGPTConfig(pattern="2:4")), calibration=CALIB, masks=nm)
    for name, mask in nm.masks.items():  # the given mask, not SparseGPT's own 2:4 choice
        assert torch.equal(state.masks[name], mask), name
    for t in resolve_targets(model):
        groups, ok = nm_compliance(t.param.detach(), 2, 4, t.in_axis)
        assert ok == groups


@pytest.mark.parametrize("config", [WandaConfig(0.5), SparseGPTConfig(pattern="2:4")])
def test_deterministic(config):
    results = []
    for _ in range(2):
        model = make_tiny_gpt2()
        state = sparsify_(model, SparsityPlan(config), calibration=CALIB)
        results.append((state, {n: p.detach().clone() for n, p in model.named_parameters()}))
    (s1, w1), (s2, w2) = results
    assert all(torch.equal(s1.masks[n], s2.masks[n]) for n in s1.masks)
    assert all(torch.equal(w1[n], w2[n]) for n in w1)


def test_bad_inputs():
    model = make_tiny_gpt2()
    plan = SparsityPlan(WandaConfig(0.5))
    with pytest.raises(SparsityConfigError, match="non-empty"):
        sparsify_(model, plan, calibration=torch.empty(0, 16, dtype=torch.long))
    with pytest.raises(SparsityConfigError, match="non-empty"):
        sparsify_(model, plan, calibration=None)
    with pytest.raises(SparsityConfigError, match=r"seq_len=65 is larger than the model's maximum \(64\)"):
        sparsify_(model, plan, calibration=torch.zeros(2, 65, dtype=torch.long))
    with pytest.raises(SparsityConfigError, match="needs no calibration"):
        sparsify_(model, SparsityPlan(OMPConfig(0.5)), calibration=CALIB)
    with pytest.raises(SparsityConfigError, match="needs calibration data"):
        compute_masks(resolve_targets(model), WandaConfig(0.5))
    with pytest.raises(SparsityConfigError, match="only be refined with sparsegpt"):
        sparsify_(model, plan, calibration=CALIB, masks=SparsityState({}))
    wrong = sparsify_(make_tiny_bert(), SparsityPlan(OMPConfig(0.5)))
    with pytest.raises(MaskMismatchError):
        sparsify_(model, SparsityPlan(SparseGPTConfig()), calibration=CALIB, masks=wrong)
    with pytest.raises(SparsityConfigError, match="inside the transformer blocks"):
        sparsify_(model, SparsityPlan(WandaConfig(0.5), TargetSpec(include=["lm_head", "c_fc"])), calibration=CALIB)
    with pytest.raises(SparsityConfigError, match="either sparsity .* or pattern"):
        WandaConfig(sparsity=0.3, pattern="2:4")
    with pytest.raises(SparsityConfigError, match="0 < N < M"):
        SparseGPTConfig(pattern="4:4")
    with pytest.raises(SparsityConfigError, match="damp"):
        SparseGPTConfig(damp=0)


@pytest.mark.parametrize("width", [3, 7, 96, 577])
def test_banded_gram_is_symmetric_by_construction_and_close_to_the_full_product(width):
    generator = torch.Generator().manual_seed(width)
    start = torch.randn(width, width, generator=generator)
    gram = start + start.t()  # accumulates: += x^T x, batch after batch
    expected = gram.clone()
    for _ in range(3):
        x = torch.randn(50, width, generator=generator)
        add_gram_(gram, x)
        expected += x.t() @ x
    # symmetry is a property of the construction (lower triangle copied from the upper), so it
    # is exact whatever the BLAS kernel; the values are compared with a tolerance, because two
    # different reductions (banded vs one matmul) may round differently on another CPU
    assert torch.equal(gram, gram.t())
    torch.testing.assert_close(gram, expected, rtol=1e-5, atol=1e-4)


def test_singular_hessian_is_a_clear_error():
    with pytest.raises(SparsityConfigError, match="singular after dampening"):
        sparsegpt_prune(torch.randn(4, 4), 1, -torch.eye(4) * 10, 0.5, name="layer.x")


# ------------------------------------------------------------------ CLI
def _cli(capsys, *argv):
    from es_plugins.cli import main

    code = main([str(a) for a in argv])
    return code, capsys.readouterr()


@pytest.fixture
def calib_file(tmp_path):
    from tests.conftest import random_text

    path = tmp_path / "calib.txt"
    path.write_text("\n".join(random_text(200, seed=i) for i in range(5)))
    return path


@pytest.mark.parametrize(
    "extra,nm",
    [
        (["--method", "wanda", "--sparsity", "0.5"], None),
        (["--method", "sparsegpt", "--pattern", "2:4"], (2, 4)),
        (["--method", "wanda", "--pattern", "2:4"], (2, 4)),
        (["--method", "wanda", "--pattern", "2:4", "--passes", "1"], (2, 4)),
    ],
)
def test_cli_calibrated_prune(tmp_path, tiny_lm_dir, calib_file, capsys, extra, nm):
    import json

    out = tmp_path / "out"
    code, captured = _cli(
        capsys,
        "prune",
        "--model",
        tiny_lm_dir,
        out,
        *extra,
        "--calib",
        calib_file,
        "--calib-samples",
        "4",
        "--calib-seq-len",
        "32",
        "--json",
    )
    report = json.loads(captured.out)
    assert code == 0 and report["targets"]["sparsity"] == pytest.approx(0.5)
    if nm:
        assert report["nm_compliant_layers"] == report["targets"]["layers"]
    state = SparsityState.load(out / "sparsity_masks.safetensors")
    assert state.meta["calibration"] == {"samples": 4, "seq_len": 32}
    default_passes = 2 if extra[1] == "wanda" and nm else 1
    given = int(extra[extra.index("--passes") + 1]) if "--passes" in extra else None
    assert state.meta["plan"]["method"]["passes"] == (given or default_passes)


def test_cli_refine_masks(tmp_path, tiny_lm_dir, calib_file, capsys):
    omp_dir = tmp_path / "omp"
    assert _cli(capsys, "prune", "--model", tiny_lm_dir, omp_dir, "--sparsity", "0.5")[0] == 0
    refined = tmp_path / "refined"
    code, _ = _cli(
        capsys,
        "prune",
        "--model",
        tiny_lm_dir,
        refined,
        "--method",
        "sparsegpt",
        "--calib",
        calib_file,
        "--calib-samples",
        "4",
        "--calib-seq-len",
        "32",
        "--refine-masks",
        omp_dir / "sparsity_masks.safetensors",
    )
    assert code == 0
    a = SparsityState.load(omp_dir / "sparsity_masks.safetensors")
    b = SparsityState.load(refined / "sparsity_masks.safetensors")
    assert all(torch.equal(a.masks[n], b.masks[n]) for n in a.masks)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--method", "wanda"], "needs calibration data: --calib"),
        (
            ["--method", "wanda", "--calib", "CALIB", "--calib-seq-len", "100"],
            r"--calib-seq-len 100 is larger than the model's maximum \(64\)",
        ),
        (
            ["--method", "wanda", "--calib", "CALIB", "--calib-samples", "500", "--calib-seq-len", "64"],
            "holds only .* sequences",
        ),
        (["--method", "wanda", "--calib", "CALIB", "--refine-masks", "MASKS"], "only sparsegpt refines"),
        (
            ["--method", "sparsegpt", "--calib", "CALIB", "--refine-masks", "MASKS", "--calib-seq-len", "16"],
            "masks do not match the model",
        ),
        (["--method", "omp", "--calib", "CALIB"], "apply to calibrated methods \\(wanda, sparsegpt\\)"),
        (["--method", "omp", "--passes", "1"], "--passes does not apply to --method omp"),
        (["--method", "sparsegpt", "--calib", "CALIB", "--sparsity", "0.3", "--pattern", "2:4"], "not both"),
    ],
)
def test_cli_calibrated_bad_input(tmp_path, tiny_lm_dir, calib_file, capsys, extra, message):
    import re

    masks = tmp_path / "wrong.safetensors"
    sparsify_(make_tiny_bert(), SparsityPlan(OMPConfig(0.5))).save(masks)
    extra = [str(calib_file) if e == "CALIB" else str(masks) if e == "MASKS" else e for e in extra]
    with pytest.raises(SystemExit):
        _cli(capsys, "prune", "--model", tiny_lm_dir, tmp_path / "o", *extra)
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "o").exists()


def test_refining_an_already_pruned_model_warns():
    model = make_tiny_gpt2()
    omp = sparsify_(model, SparsityPlan(OMPConfig(0.5)))  # pruned in place: nothing left to reconstruct from
    with pytest.warns(UserWarning, match="reconstructs from the \\*dense\\* weights"):
        sparsify_(model, SparsityPlan(SparseGPTConfig(0.5)), calibration=CALIB, masks=omp)


def test_default_schedule_per_method_and_pattern():
    """docs/llm.md measures why: one pass for SparseGPT and unstructured Wanda, two for N:M Wanda."""
    assert SparseGPTConfig(0.5).passes == 1 and SparseGPTConfig(pattern="2:4").passes == 1
    assert WandaConfig(0.5).passes == 1 and WandaConfig(pattern="2:4").passes == 2
    assert WandaConfig(pattern="2:4", passes=1).passes == 1 and SparseGPTConfig(0.5, passes=2).passes == 2
    with pytest.raises(SparsityConfigError, match="passes must be 1 or 2, got 3"):
        WandaConfig(0.5, passes=3)


def _input_sq_norms(model, module) -> torch.Tensor:
    """Squared column norms of what ``module`` receives when ``model`` runs the calibration set."""
    seen: list[torch.Tensor] = []
    hook = module.register_forward_pre_hook(lambda _, args: seen.append(args[0].reshape(-1, args[0].shape[-1])))
    with torch.no_grad():
        model(input_ids=CALIB)
    hook.remove()
    return torch.cat(seen).float().pow(2).sum(0)


@pytest.mark.parametrize("passes", [1, 2])
def test_the_schedule_decides_which_inputs_a_later_layer_is_scored_on(passes):
    """Two passes score every layer of a block on the dense block's activations (the reference
    codes' scheme); one pass scores a layer on what the already-pruned layers before it feed it."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    dense = GPT2LMHeadModel(GPT2Config(vocab_size=99, n_embd=32, n_layer=1, n_head=4, n_positions=64)).eval()
    model = copy.deepcopy(dense)
    state = sparsify_(model, SparsityPlan(WandaConfig(0.5, passes=passes)), calibration=CALIB)
    last = dense.transformer.h[0].mlp.c_proj  # fed by c_attn, attn.c_proj and c_fc, all pruned before it
    # The pruned model feeds its last layer exactly what one pass saw: that layer's own weight is not upstream.
    expected = {
        schedule: wanda_keep_mask(
            last.weight, 0, _input_sq_norms(feeder, feeder.transformer.h[0].mlp.c_proj), 0.5, None
        )
        for schedule, feeder in ((1, model), (2, dense))
    }
    # The expected scores come from another reduction (one forward of the whole model, cat, sum)
    # than the engine's, so a near-tie may round the other way on another CPU: a handful of
    # differing bits is allowed, far fewer than the ~80 of 4,096 that separate the schedules.
    mask = state.masks["transformer.h.0.mlp.c_proj.weight"]
    differing = {schedule: int((mask != expected[schedule]).sum()) for schedule in (1, 2)}
    assert differing[passes] <= 4 < 40 <= differing[3 - passes]


# --------------------------------------------------------------------- the one driver and its pieces
def test_find_blocks_returns_the_transformer_blocks_and_their_inputs():
    from es_plugins.engines.calibration.blocks import capture_block_inputs, find_blocks

    model = make_tiny_gpt2()
    prefix, blocks = find_blocks(model)
    assert prefix == "transformer.h" and len(blocks) == model.config.n_layer
    inputs = capture_block_inputs(model, blocks[0], [CALIB[:4], CALIB[4:]])
    assert [args[0].shape[:2] for args, _ in inputs] == [torch.Size([4, 16]), torch.Size([4, 16])]


def test_the_checks_refuse_targets_outside_the_blocks():
    from es_plugins.engines.calibration.checks import group_by_block

    model = make_tiny_gpt2()
    targets = resolve_targets(model, TargetSpec(include=["lm_head", "c_attn"]))
    with pytest.raises(SparsityConfigError, match="exclude these: \\['transformer.wte.weight'\\]"):
        group_by_block(targets, "transformer.h", model.config.n_layer)


def test_the_activation_store_spills_to_disk_beyond_its_budget_and_reads_back_the_same():
    from es_plugins.engines.calibration.driver import ActivationStore

    hidden = [((torch.randn(2, 3, 4), "mask"), {"k": 1}), ((torch.randn(2, 3, 4), "mask"), {"k": 2})]
    in_memory = ActivationStore(None).keep(hidden)
    assert in_memory is hidden
    store = ActivationStore(budget=0)
    spilled = store.keep(hidden)
    assert not isinstance(spilled[0][0][0], torch.Tensor)
    loaded = store.load(spilled)
    assert all(torch.equal(a[0], b[0]) and a[1:] == b[1:] and ka == kb for (a, ka), (b, kb) in zip(loaded, hidden))
    store.close()


def test_the_in_memory_source_gives_the_masks_of_sparsify():
    from es_plugins.engines.calibration.in_memory import prune_calibrated_

    direct, through = make_tiny_gpt2(), make_tiny_gpt2()
    seen = []
    state = prune_calibrated_(direct, SparsityPlan(WandaConfig(0.5)), CALIB, on_block=lambda i, n: seen.append(i))
    reference = sparsify_(through, SparsityPlan(WandaConfig(0.5)), calibration=CALIB)
    assert seen == list(range(direct.config.n_layer))
    assert all(torch.equal(state.masks[n], reference.masks[n]) for n in reference.masks)
