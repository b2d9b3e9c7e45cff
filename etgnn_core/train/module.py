"""PyTorch Lightning module: the same code trains on CPU, one GPU, or DDP on several."""

from __future__ import annotations

import math
import time

import lightning as L
import torch

from etgnn_core.metrics import voigt_moduli
from etgnn_core.model.etgnn import ETGNN
from etgnn_core.tensors.frames import closest_candidate_error
from etgnn_core.train.batching import Batch


def target_errors(model: ETGNN, batch: Batch, squared: frozenset[str] = frozenset(),
                  moduli: frozenset[str] = frozenset(), ionic: bool = False
                  ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per target: (sum of |prediction - label| over labelled components, number of those components);
    for the targets named in ``squared``, the sum of (prediction - label)**2 instead.  For the rank-4
    targets named in ``moduli`` also ``"<name>:moduli"``: the summed |error| of the Voigt bulk and shear
    moduli and their number (frame-independent, so no candidate frames are needed).  With ``ionic``, also
    ``"eps_ionic"`` (:func:`eps_ionic_error`) where the batch carries ionic dielectric labels.

    A per-structure label whose frame is ambiguous (``batch.frames``) is compared in the candidate frame
    closest to the prediction (:mod:`etgnn_core.tensors.frames`).  A known part of a target
    (``batch.offsets``, Sample.offsets) is added to the prediction first, times the model's learned
    per-structure multiple where it has one (ModelConfig.gated): the network learns the rest.
    """
    out = model(batch.graph)
    errs = {}
    for spec in model.config.targets:
        pred = out.tensors[spec.name]
        pred = pred.atom if spec.per_atom else pred.structure
        if batch.offsets is not None and spec.name in batch.offsets:
            known = batch.offsets[spec.name]  # [S, ...]
            if spec.name in out.gates:  # ModelConfig.gated: (1 + g) x the known part
                known = known * (1 + out.gates[spec.name]).reshape((-1,) + (1,) * (known.dim() - 1))
            pred = pred + known
        mask = batch.masks[spec.name]
        label = batch.targets[spec.name]
        if spec.name in moduli:
            errs[f"{spec.name}:moduli"] = invariant_errors(pred[mask], label[mask])
        if batch.frames is not None and not spec.per_atom and spec.rank >= 1:
            power = 2 if spec.name in squared else 1
            per_struct = closest_candidate_error(pred[mask], label[mask], batch.frames[mask], power)  # [n_labelled]
            n = per_struct.numel() * int(torch.tensor(spec.shape).prod())
            errs[spec.name] = (per_struct.sum(), torch.tensor(n, device=pred.device))
            continue
        diff = (pred - label)[mask]
        total = diff.square().sum() if spec.name in squared else diff.abs().sum()
        errs[spec.name] = (total, torch.tensor(diff.numel(), device=diff.device))
        if ionic and spec.name == "born_charges" and batch.eps_ionic is not None:
            errs["eps_ionic"] = eps_ionic_error(pred, batch)
    return errs


def invariant_errors(pred: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed |error| of the rotation invariants users read off a tensor, their number): the Voigt bulk and
    shear moduli of a rank-4 tensor, the norm ||e|| of a rank-3 one.  [n, ...] each; an ambiguous label
    frame cannot change either."""
    if pred.dim() == 5:  # [n, 3, 3, 3, 3]
        k_err, g_err = (p - t for p, t in zip(voigt_moduli(pred), voigt_moduli(label)))  # [n]
        return k_err.abs().sum() + g_err.abs().sum(), torch.tensor(2 * k_err.numel(), device=pred.device)
    norm = lambda x: (x.flatten(1).square().sum(1) + 1e-12).sqrt()  # noqa: E731  [n]; finite gradient at 0
    diff = norm(pred) - norm(label)
    return diff.abs().sum(), torch.tensor(diff.numel(), device=pred.device)


def eps_ionic_error(born_charges: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed relative error of the principal values of ε_ion from the predicted charges, their number) over
    the structures with an ionic label (etgnn_core.data.ionic; principal values: the label's frame is moot).

    Relative: |pred - label| / (mean label principal value + 1) per principal value, because the force
    constants of a universal potential are off by a fraction (softer or stiffer), not by an amount.
    """
    counts = torch.bincount(batch.graph.batch, minlength=batch.graph.n_structures).tolist()
    total, n = born_charges.new_zeros(()), 0
    for z, ionic in zip(torch.split(born_charges, counts), batch.eps_ionic):  # z [n_atoms, 3, 3]
        if ionic is None:
            continue
        kernel, label = ionic  # [3n, 3n], [3, 3]
        zf = (z - z.mean(dim=0)).transpose(0, 1).reshape(3, -1)  # [3, 3n]
        eps = zf @ kernel @ zf.T
        pred_pv = torch.linalg.eigvalsh(0.5 * (eps + eps.T))
        label_pv = torch.linalg.eigvalsh(0.5 * (label + label.T))
        total, n = total + (pred_pv - label_pv).abs().sum() / (label_pv.mean().abs() + 1), n + 3
    return total, torch.tensor(n, device=born_charges.device)


ELAPSED_KEY = "etgnn_elapsed_seconds"  # checkpoint entry: training time before the checkpoint


class ETGNNModule(L.LightningModule):
    """Per target an L1 (MAE / scale) or L2 (MSE / scale**2) loss, weighted and summed; cosine learning rate."""

    def __init__(self, model: ETGNN, weights: dict[str, float], lr: float, max_epochs: int,
                 max_minutes: float | None = None, weight_decay: float = 0.0, warmup: float = 0.0,
                 squared: frozenset[str] = frozenset(), moduli_weights: dict[str, float] | None = None,
                 eps_ionic_weight: float = 0.0, decoupled_weight_decay: bool = False):
        super().__init__()
        self.model = model
        self.weights = {t.name: float(weights.get(t.name, 1.0)) for t in model.config.targets}
        self.squared = frozenset(squared)  # targets with an L2 loss (TrainConfig.l2_targets)
        self.moduli_weights = {k: float(v) for k, v in (moduli_weights or {}).items() if v}
        self.eps_ionic_weight = float(eps_ionic_weight)  # DataConfig.eps_ionic_weight
        self.lr, self.max_epochs, self.max_minutes, self.weight_decay = lr, max_epochs, max_minutes, weight_decay
        self.warmup = warmup
        self.decoupled = bool(decoupled_weight_decay)  # OptimConfig.decoupled_weight_decay: AdamW
        self._start = None
        self._elapsed_before = 0.0  # seconds trained before a resume (from the checkpoint)

    def _loss(self, batch: Batch, stage: str) -> torch.Tensor:
        errs = target_errors(self.model, batch, self.squared, frozenset(self.moduli_weights),
                             ionic=bool(self.eps_ionic_weight))
        loss = 0.0
        n_graphs = batch.graph.n_structures
        for i, spec in enumerate(self.model.config.targets):
            total, count = errs[spec.name]
            mean = total / count.clamp(min=1)  # MAE, or MSE for an L2 target
            l2 = spec.name in self.squared
            loss = loss + self.weights[spec.name] * mean / self.model.scales[i] ** (2 if l2 else 1)
            self.log(f"{stage}_{'mse' if l2 else 'mae'}_{spec.name}", mean, batch_size=n_graphs, on_epoch=True,
                     on_step=False, sync_dist=stage != "train")
            if spec.name in self.moduli_weights:  # moduli MAE in the tensor's unit, on the component scale
                total, count = errs[f"{spec.name}:moduli"]
                moduli_mae = total / count.clamp(min=1)
                loss = loss + self.moduli_weights[spec.name] * moduli_mae / self.model.scales[i]
                self.log(f"{stage}_mae_{spec.name}_moduli", moduli_mae, batch_size=n_graphs, on_epoch=True,
                         on_step=False, sync_dist=stage != "train")
        if "eps_ionic" in errs and self.eps_ionic_weight:  # an indirect Born-charge label (relative error)
            total, count = errs["eps_ionic"]
            rel = total / count.clamp(min=1)
            loss = loss + self.eps_ionic_weight * rel
            self.log(f"{stage}_rel_eps_ionic", rel, batch_size=n_graphs, on_epoch=True, on_step=False,
                     sync_dist=stage != "train")
        self.log(f"{stage}_loss", loss, batch_size=n_graphs, on_epoch=True, on_step=False,
                 prog_bar=True, sync_dist=stage != "train")
        return loss

    def training_step(self, batch, batch_idx):
        return self._loss(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self._loss(batch, "val")

    def test_step(self, batch, batch_idx):
        return self._loss(batch, "test")

    def on_train_start(self):
        self._start = time.monotonic()

    def elapsed_seconds(self) -> float:
        """Wall-clock seconds of training, summed over the runs a resume chained together."""
        return self._elapsed_before + (time.monotonic() - self._start if self._start is not None else 0.0)

    # A resumed run (e.g. in the next session) continues the wall-clock cosine schedule where it stopped:
    # with the clock restarted, the learning rate would jump back to its peak for an already trained model.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[ELAPSED_KEY] = self.elapsed_seconds()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._elapsed_before = float(checkpoint.get(ELAPSED_KEY, 0.0))

    def progress(self) -> float:
        """Fraction of the training budget used: epochs or wall-clock minutes, whichever is further."""
        frac = 0.0
        trainer = self._trainer  # None outside a fit (the public property raises then)
        if trainer is not None and trainer.num_training_batches not in (0, float("inf")):
            steps = self.max_epochs * trainer.num_training_batches
            frac = trainer.global_step / max(steps, 1)
        if self.max_minutes and self._start is not None:
            frac = max(frac, self.elapsed_seconds() / (60 * self.max_minutes))
        return min(frac, 1.0)

    def lr_factor(self, progress: float) -> float:
        """Linear warm-up over the first ``warmup`` of the budget, then cosine decay to 1 % of ``lr``."""
        cosine = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))
        return cosine * min(1.0, (progress + 1e-3) / self.warmup) if self.warmup > 0 else cosine

    def configure_optimizers(self):
        adam = torch.optim.AdamW if self.decoupled else torch.optim.Adam
        opt = adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: self.lr_factor(self.progress()))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
