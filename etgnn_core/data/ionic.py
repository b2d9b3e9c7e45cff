"""The ionic dielectric response as a second Born-charge label (DataConfig.eps_ionic).

A crystal labelled with the static ε0 beside ε∞ (the Materials Project dielectric set) carries its
ionic part ε_ion = ε0 - ε∞, which the Born charges Z set through the Γ force constants Φ:

    ε_ion[i, k] = (4π e² / V) Σ_{a,j,b,l} Z[a, i, j] Φ⁺[a j, b l] Z[b, k, l]     (Gaussian units)

with e² = 14.39964 eV·Å, V in Å³, Φ⁺ in Å²/eV (translations and unstable modes left out; mass-free:
the masses cancel between the mode charges and ω²).  A table from ``benchmarks/eps_ionic_table.py``
holds Φ⁺ (SevenNet 7net-l3i5) and ε_ion (DFT) per crystal; :func:`attach_eps_ionic` gives each sample
the kernel ``(4π e² / V) Φ⁺`` and the label, and training compares the principal values of ε_ion from
the predicted charges with the label's (rotation invariants: no frame question).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from etgnn_core.data.sample import DataError

FOUR_PI_E2 = 4 * np.pi * 14.39964  # eV·Å: ε_ion = FOUR_PI_E2 / V[Å³] · Z Φ⁺[Å²/eV] Z


def eps_ionic(born_charges: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """ε_ion [3, 3] from Born charges [n, 3, 3] (e; acoustic sum rule imposed here) and a kernel
    [3n, 3n] = (4π e² / V) Φ⁺ (row a*3 + j)."""
    from etgnn_core.spectra.ir import impose_asr

    zf = impose_asr(born_charges).transpose(1, 0, 2).reshape(3, -1)  # [3, 3n]
    return zf @ kernel @ zf.T


def write_ionic_table(path: str | Path, ids, pinvs, labels, unstable, compress: bool = False, **extra) -> None:
    """The table :func:`read_ionic_table` reads: ``ids``, ``pinv_flat`` (the Φ⁺ blocks [3n, 3n], flattened
    and concatenated), ``n_atoms``, ``eps_ionic_dft`` [m, 3, 3], ``unstable`` [m], and ``extra`` arrays."""
    pinvs = [np.asarray(p).reshape(len(p), -1) for p in pinvs]
    save = np.savez_compressed if compress else np.savez
    save(path, ids=np.array(ids), pinv_flat=np.concatenate([p.ravel() for p in pinvs]),
         n_atoms=np.array([len(p) // 3 for p in pinvs]), eps_ionic_dft=np.array(labels),
         unstable=np.array(unstable), **extra)


def read_ionic_table(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """id -> (Φ⁺ [3n, 3n] Å²/eV, ε_ion label [3, 3], unstable modes) from a merged table or a folder of shards."""
    path = Path(path)
    files = sorted(path.glob("shard_*.npz")) if path.is_dir() else [path]
    if not files or not all(f.exists() for f in files):
        raise DataError(f"{path}: no ionic-dielectric table (benchmarks/eps_ionic_table.py) found")
    out = {}
    for f in files:
        with np.load(f) as d:
            m = 3 * d["n_atoms"]
            blocks = np.split(d["pinv_flat"], np.cumsum(m * m)[:-1])
            for i, b, k, e, u in zip(d["ids"], blocks, m, d["eps_ionic_dft"], d["unstable"]):
                out[str(i)] = (b.reshape(k, k), np.asarray(e, dtype=float), int(u))
    return out


def attach_eps_ionic(samples: list, path: str | Path, max_label: float = 30.0, scale: float = 1.0) -> int:
    """Set ``sample.eps_ionic = (kernel [3n, 3n], label [3, 3])`` (kernel = ``scale`` (4π e²/V) Φ⁺; ``scale``
    corrects a potential's systematic softness, DataConfig.eps_ionic_scale) where the table has the crystal with
    no unstable mode and a label whose principal values lie in [0, max_label] (larger ones are soft
    modes, where ε_ion ∝ 1/ω² makes a small phonon error a large one).  Returns the number set."""
    table = read_ionic_table(path)
    n = 0
    for s in samples:
        row = table.get(str(s.id))
        if row is None:
            continue
        pinv, label, unstable = row
        if pinv.shape != (3 * len(s.atoms),) * 2:
            raise DataError(f"{path}: {s.id} has {pinv.shape[0] // 3} atoms there, {len(s.atoms)} in the data")
        values = np.linalg.eigvalsh(0.5 * (label + label.T))
        if unstable or values.min() < -0.5 or values.max() > max_label:
            continue
        s.eps_ionic = (scale * FOUR_PI_E2 / s.atoms.get_volume() * pinv, label)
        n += 1
    return n
