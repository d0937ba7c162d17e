"""The sweep's fine-tune task, registered as the ``finetune`` sweep task (entry-point group
``es_plugins.sweep_tasks`` in setup.cfg), so the core's sweep finds it without importing it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

from safetensors.torch import save_file

from es_plugins.analysis.noise import Measurement
from es_plugins.analysis.tasks import layer_sparsity_at, method_at
from es_plugins.engines.device import check_precision, resolve_device
from es_plugins.io.checkpoint import check_checkpoint_dir
from es_plugins.masks.targets import resolve_targets

from .hf_recipes import finetune_and_evaluate, load_classifier
from .transformers import SparsityCallback


class FinetuneTask:
    """Sweep task: accuracy after a short fine-tune with the mask fixed — the paper's BERT
    protocol (prune the pre-trained encoder once, fine-tune, evaluate). Each evaluation loads
    the checkpoint afresh with a seeded head, so levels and seeds are independent."""

    def __init__(
        self,
        model_dir: str | Path,
        train: tuple[Sequence[str], Sequence[int]],
        test: tuple[Sequence[str], Sequence[int]],
        num_labels: int,
        method: str = "omp",
        scope: str = "global",
        epochs: float = 1.0,
        batch_size: int = 16,
        learning_rate: float = 1e-4,
        max_length: int = 64,
        targets=None,
        keep_dense_weights: str | Path | None = None,
        device: str | None = None,
        precision: str | None = None,
    ):
        method_at(method, 0.0, scope, 0)  # validate before any training
        resolve_device(device)
        check_precision(precision)
        check_checkpoint_dir(Path(model_dir))
        self.model_dir, self.train, self.test, self.num_labels = model_dir, train, test, num_labels
        self.method, self.scope, self.targets = method, scope, targets
        self.keep_dense_weights = Path(keep_dense_weights) if keep_dense_weights else None
        self.options = dict(
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            max_length=max_length,
            device=device,
            precision=precision,
        )

    def load_model(self, seed: int = 0):
        """The checkpoint as a classifier with a seeded head (what each evaluation fine-tunes)."""
        return load_classifier(self.model_dir, self.num_labels, seed=seed)[0]

    def evaluate(self, sparsity: float, seed: int) -> Measurement:
        """Test accuracy after fine-tuning at ``sparsity``, with each example's correctness (the
        sweep's bootstrap resamples the examples)."""
        model, tokenizer = load_classifier(self.model_dir, self.num_labels, seed=seed)
        callbacks = []
        if sparsity > 0:
            callbacks.append(SparsityCallback(method_at(self.method, sparsity, self.scope, seed), targets=self.targets))
        with tempfile.TemporaryDirectory() as workdir:
            metrics, _ = finetune_and_evaluate(
                model, tokenizer, self.train, self.test, workdir, callbacks=callbacks, seed=seed, **self.options
            )
        if sparsity == 0 and self.keep_dense_weights and not self.keep_dense_weights.exists():
            # The fine-tuned dense weights: OMP of them is what one IMP round would prune.
            self.keep_dense_weights.parent.mkdir(parents=True, exist_ok=True)
            save_file(
                {t.name: t.param.detach().to("cpu").contiguous() for t in resolve_targets(model, self.targets)},
                str(self.keep_dense_weights),
            )
        correct = [float(c) for c in metrics["correct"]]
        return Measurement(tuple(correct), (1.0,) * len(correct), transform="mean", unit="examples")

    def layer_sparsity(self, sparsity: float) -> dict[str, float]:
        return layer_sparsity_at(self.load_model(), self.method, sparsity, self.scope, self.targets)
