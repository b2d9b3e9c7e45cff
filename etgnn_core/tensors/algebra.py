"""Cartesian tensor algebra used by the app, the notebooks and the figures (numpy, float64).

Index conventions are those of :mod:`etgnn_core.keys`: Born charges ``Z[a, i, j]`` with
``i`` the polarization direction and ``j`` the displacement direction; piezoelectric stress
tensor ``e[i, j, k]`` symmetric in ``(j, k)``; elastic stiffness ``C[i, j, k, l]`` with the Voigt
symmetries.  Voigt order is 11, 22, 33, 23, 13, 12 (``VOIGT_PAIRS``) and no factor 2 is used
anywhere: ``e_iJ = e_ijk`` and ``C_IJ = C_ijkl``.

Functions accept leading batch dimensions wherever the rank is implied by the function
(``[..., 3, 3]`` for rank 2, ``[..., 3, 3, 3]`` for ``symmetrize(..., "sym_last2")`` ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
"""Voigt index ``J`` -> Cartesian pair ``(j, k)``: 11, 22, 33, 23, 13, 12."""

VOIGT_LABELS = ("xx", "yy", "zz", "yz", "xz", "xy")

# Cartesian pair (j, k) -> Voigt index J
_VOIGT_INDEX = np.empty((3, 3), dtype=np.int64)
for _J, (_j, _k) in enumerate(VOIGT_PAIRS):
    _VOIGT_INDEX[_j, _k] = _VOIGT_INDEX[_k, _j] = _J

SYMMETRIZE_KINDS = ("none", "symmetric", "sym_last2", "voigt")
_KIND_RANK = {"symmetric": 2, "sym_last2": 3, "voigt": 4}

_DEFAULT_RTOL = 1e-6


def _as_tensor(T, rank: int, name: str = "tensor") -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.ndim < rank or T.shape[T.ndim - rank :] != (3,) * rank:
        raise ValueError(f"{name} must have shape [..., {', '.join(['3'] * rank)}], got {T.shape}")
    return T


def _swap_last2(T: np.ndarray) -> np.ndarray:
    return np.swapaxes(T, -1, -2)


# --------------------------------------------------------------------------- rank 2 -----


@dataclass(frozen=True)
class Rank2Parts:
    """The three rotation-invariant parts of a rank-2 tensor; they sum exactly to it.

    For a Born effective charge tensor ``Z*``:

    * ``isotropic`` = ``(tr Z*/3) I``: the mean (isotropic) dynamical charge, the part a
      point charge would have.
    * ``antisymmetric`` = ``(Z* - Z*^T)/2``: the rotational part (an axial vector); it is zero
      on sites whose symmetry forbids it and is what a symmetric-only model would miss.
    * ``symmetric_traceless`` = ``(Z* + Z*^T)/2 - isotropic``: the anisotropy, i.e. how much the
      charge differs between displacement directions.
    """

    isotropic: np.ndarray
    antisymmetric: np.ndarray
    symmetric_traceless: np.ndarray

    @property
    def total(self) -> np.ndarray:
        return self.isotropic + self.antisymmetric + self.symmetric_traceless


def isotropic_value(T) -> np.ndarray:
    """``tr(T) / 3`` over the last two axes (the mean charge of a Born tensor)."""
    T = _as_tensor(T, 2)
    return np.trace(T, axis1=-2, axis2=-1) / 3.0


def decompose_rank2(T) -> Rank2Parts:
    """Split ``T [..., 3, 3]`` into isotropic, antisymmetric and traceless symmetric parts."""
    T = _as_tensor(T, 2)
    iso = isotropic_value(T)[..., None, None] * np.eye(3)
    anti = 0.5 * (T - _swap_last2(T))
    sym_tl = 0.5 * (T + _swap_last2(T)) - iso
    return Rank2Parts(isotropic=iso, antisymmetric=anti, symmetric_traceless=sym_tl)


def symmetric_part(T) -> np.ndarray:
    """``(T + T^T) / 2`` over the last two axes."""
    T = _as_tensor(T, 2)
    return 0.5 * (T + _swap_last2(T))


def principal_values(T) -> np.ndarray:
    """Eigenvalues ``[..., 3]`` (ascending) of the symmetric part of ``T [..., 3, 3]``."""
    return np.linalg.eigvalsh(symmetric_part(T))


def principal_axes(T) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of the symmetric part of ``T [..., 3, 3]``.

    Returns ``(eigenvalues [..., 3] ascending, eigenvectors [..., 3, 3])`` with the eigenvector
    of ``eigenvalues[..., n]`` in column ``n``.  The eigenvector frame is made right-handed
    (determinant +1) by flipping the sign of the last column where needed.
    """
    w, v = np.linalg.eigh(symmetric_part(T))
    flip = np.linalg.det(v) < 0
    v[..., :, 2] = np.where(flip[..., None], -v[..., :, 2], v[..., :, 2])
    return w, v


def is_positive_definite(T, tol: float = 0.0):
    """True where every eigenvalue of the symmetric part of ``T`` is ``> tol``.

    (``x^T T x = x^T sym(T) x``, so this is the usual definition also for non-symmetric ``T``.)
    Returns a Python bool for a single tensor, a bool array for a batch.
    """
    w, _ = principal_axes(T)
    out = np.all(w > tol, axis=-1)
    return bool(out) if out.ndim == 0 else out


# --------------------------------------------------------------------- rotations -----


def rotate_tensor(T, R, rank: int | None = None) -> np.ndarray:
    """``T'_{ab..} = R_ai R_bj ... T_ij..`` for a Cartesian tensor of any rank.

    ``rank`` defaults to ``T.ndim`` (no batch axes); give it to rotate a batch ``[..., 3, ..., 3]``.
    ``R [3, 3]`` (or ``[..., 3, 3]`` broadcasting with the batch) may be any orthogonal matrix;
    this is the transformation law of polar tensors (for ``R = -I`` an odd-rank tensor changes
    sign).
    """
    T = np.asarray(T, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    rank = T.ndim if rank is None else rank
    T = _as_tensor(T, rank)
    if rank == 0:
        return T.copy()
    if rank > 12:
        raise ValueError("rank too large")
    old, new = "ijklmnopqrst"[:rank], "abcdefghuvwx"[:rank]
    operands = ",".join(f"...{a}{i}" for a, i in zip(new, old))
    return np.einsum(f"{operands},...{old}->...{new}", *([R] * rank), T)


def random_orthogonal(rng=None, reflection: bool | None = None) -> np.ndarray:
    """A Haar-distributed random rotation ``[3, 3]`` (float64).

    ``reflection=False``: proper rotation (det +1).  ``True``: the rotation times ``-1``
    (det -1, an improper rotation).  ``None``: either, with probability 1/2 each (Haar on O(3)).
    ``rng`` is a ``numpy.random.Generator``, a seed, or None.
    """
    rng = np.random.default_rng(rng)
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))  # Haar on O(3)
    if np.linalg.det(q) < 0:
        q[:, 2] = -q[:, 2]  # Haar on SO(3)
    if reflection is None:
        reflection = bool(rng.integers(2))
    return -q if reflection else q


# ------------------------------------------------------------------------- Voigt -----


def _check_symmetry(T: np.ndarray, Tp: np.ndarray, what: str, rtol: float) -> None:
    scale = max(float(np.max(np.abs(T), initial=0.0)), 1e-300)
    dev = float(np.max(np.abs(T - Tp), initial=0.0))
    if dev > rtol * scale:
        raise ValueError(f"tensor violates the {what} (max deviation {dev:.3g}, max |entry| {scale:.3g})")


def voigt_rank3_to_full(e_3x6) -> np.ndarray:
    """Piezoelectric ``e_iJ [..., 3, 6]`` (Voigt) -> ``e_ijk [..., 3, 3, 3]`` (``e_ijk = e_iJ``)."""
    e = np.asarray(e_3x6, dtype=np.float64)
    if e.shape[-2:] != (3, 6):
        raise ValueError(f"Voigt rank-3 tensor must have shape [..., 3, 6], got {e.shape}")
    return e[..., :, _VOIGT_INDEX]


def full_rank3_to_voigt(e, check: bool = False, rtol: float = _DEFAULT_RTOL) -> np.ndarray:
    """``e_ijk [..., 3, 3, 3]`` -> Voigt ``e_iJ [..., 3, 6]`` with no factor 2.

    ``e_ijk`` and ``e_ikj`` are averaged.  ``check=True`` raises ``ValueError`` when they
    differ by more than ``rtol`` times the largest entry (symmetry ``e_ijk = e_ikj``).
    """
    e = _as_tensor(e, 3, "rank-3 tensor")
    if check:
        _check_symmetry(e, _swap_last2(e), "strain-pair symmetry e_ijk = e_ikj", rtol)
    e = 0.5 * (e + _swap_last2(e))
    j, k = np.array(VOIGT_PAIRS).T
    return e[..., :, j, k]


def voigt_rank4_to_full(C_6x6, check: bool = False, rtol: float = _DEFAULT_RTOL) -> np.ndarray:
    """Elastic ``C_IJ [..., 6, 6]`` (Voigt) -> ``C_ijkl [..., 3, 3, 3, 3]`` (``C_ijkl = C_IJ``).

    ``check=True`` raises ``ValueError`` if ``C_IJ != C_JI`` (major symmetry).
    """
    C = np.asarray(C_6x6, dtype=np.float64)
    if C.shape[-2:] != (6, 6):
        raise ValueError(f"Voigt rank-4 tensor must have shape [..., 6, 6], got {C.shape}")
    if check:
        _check_symmetry(C, _swap_last2(C), "major symmetry C_IJ = C_JI", rtol)
    I = _VOIGT_INDEX[:, :, None, None]
    J = _VOIGT_INDEX[None, None, :, :]
    return C[..., I, J]


def softest_voigt_eigenvalue(C6) -> float:
    """Smallest eigenvalue of the symmetric part of Voigt ``C_IJ [6, 6]`` (GPa): > 0 for a mechanically
    stable crystal (positive definite; Born criteria)."""
    c = np.asarray(C6, dtype=np.float64)
    return float(np.linalg.eigvalsh(0.5 * (c + c.T))[0])


def full_rank4_to_voigt(C, check: bool = False, rtol: float = _DEFAULT_RTOL) -> np.ndarray:
    """``C_ijkl [..., 3, 3, 3, 3]`` -> Voigt ``C_IJ [..., 6, 6]`` (order 11, 22, 33, 23, 13, 12).

    The minor symmetries are enforced by averaging (a major asymmetry is kept: the 6x6
    matrix can hold it).  ``check=True`` raises ``ValueError`` naming the first violated
    symmetry among ``C_ijkl = C_jikl``, ``C_ijkl = C_ijlk`` and ``C_ijkl = C_klij``.
    """
    C = _as_tensor(C, 4, "rank-4 tensor")
    if check:
        _check_symmetry(C, np.swapaxes(C, -4, -3), "minor symmetry C_ijkl = C_jikl", rtol)
        _check_symmetry(C, _swap_last2(C), "minor symmetry C_ijkl = C_ijlk", rtol)
        _check_symmetry(C, _major_swap(C), "major symmetry C_ijkl = C_klij", rtol)
    C = 0.5 * (C + np.swapaxes(C, -4, -3))
    C = 0.5 * (C + _swap_last2(C))
    p = np.array(VOIGT_PAIRS)
    i, j = p[:, 0][:, None], p[:, 1][:, None]
    k, l = p[:, 0][None, :], p[:, 1][None, :]
    return C[..., i, j, k, l]


def _major_swap(C: np.ndarray) -> np.ndarray:
    n = C.ndim
    axes = list(range(n - 4)) + [n - 2, n - 1, n - 4, n - 3]
    return np.transpose(C, axes)


# ------------------------------------------------------------------- projectors -----


def symmetrize(T, kind: str) -> np.ndarray:
    """Project ``T`` onto a symmetry class (an idempotent map that commutes with rotations).

    * ``"none"``: a copy of ``T`` (any rank).
    * ``"symmetric"``: rank 2, ``(T + T^T)/2`` (dielectric, polarizability).
    * ``"sym_last2"``: rank 3, ``(e_ijk + e_ikj)/2`` (piezoelectric).
    * ``"voigt"``: rank 4, average over the 8 index permutations generated by the minor
      (``ij``, ``kl``) and major (``ij <-> kl``) symmetries (elastic stiffness).

    Leading batch axes are allowed.
    """
    if kind == "none":
        return np.array(T, dtype=np.float64)
    if kind not in _KIND_RANK:
        raise ValueError(f"unknown symmetrize kind {kind!r}; expected one of {SYMMETRIZE_KINDS}")
    T = _as_tensor(T, _KIND_RANK[kind])
    T = 0.5 * (T + _swap_last2(T))
    if kind == "voigt":
        T = 0.5 * (T + np.swapaxes(T, -4, -3))
        T = 0.5 * (T + _major_swap(T))
    return T


# ------------------------------------------------------------ surfaces and meshes -----


def longitudinal_value(e, directions) -> np.ndarray:
    """``e_ijk n_i n_j n_k`` for unit vectors ``directions [..., 3]`` and one ``e [3, 3, 3]``."""
    e = _as_tensor(e, 3, "rank-3 tensor")
    n = np.asarray(directions, dtype=np.float64)
    return np.einsum("ijk,...i,...j,...k->...", e, n, n, n)


def longitudinal_surface(e, n_theta: int = 40, n_phi: int = 80):
    """Longitudinal piezoelectric surface of a rank-3 tensor ``e [3, 3, 3]`` (or Voigt ``[3, 6]``).

    On a (theta, phi) grid of directions ``n`` (theta in [0, pi], phi in [0, 2 pi], both ends
    included so the surface closes), ``value(n) = e_ijk n_i n_j n_k`` and the surface point is
    ``|value(n)| n``.  Returns ``(x, y, z, value)``, each ``[n_theta, n_phi]``; the sign is kept
    in ``value`` (colour the surface with it).
    """
    e = np.asarray(e, dtype=np.float64)
    if e.shape == (3, 6):
        e = voigt_rank3_to_full(e)
    theta = np.linspace(0.0, np.pi, n_theta)[:, None]
    phi = np.linspace(0.0, 2.0 * np.pi, n_phi)[None, :]
    n = np.stack(
        np.broadcast_arrays(np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)),
        axis=-1,
    )
    value = longitudinal_value(e, n)
    r = np.abs(value)
    return r * n[..., 0], r * n[..., 1], r * n[..., 2], value


@dataclass(frozen=True)
class EllipsoidMesh:
    """Triangle mesh of the ellipsoid of a rank-2 tensor's symmetric part.

    ``vertices [V, 3]`` (Angstrom), ``triangles [F, 3]`` (vertex indices, counter-clockwise seen
    from outside), ``normals [V, 3]`` (unit, outward), ``radii [3]`` (semi-axes along the
    eigenvector columns), ``eigenvalues [3]`` ascending, ``eigenvectors [3, 3]`` (columns),
    ``positive_definite``: False when an eigenvalue is ``<= 0`` -- the mesh then shows
    ``|eigenvalue|`` and the caller must mark it (different colour), not hide it.
    """

    vertices: np.ndarray
    triangles: np.ndarray
    normals: np.ndarray
    radii: np.ndarray
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    positive_definite: bool


def _unit_sphere(n: int) -> tuple[np.ndarray, np.ndarray]:
    """UV sphere: poles + (n - 1) rings of 2n vertices; outward counter-clockwise triangles."""
    m = 2 * n
    theta = np.pi * np.arange(1, n) / n
    phi = 2.0 * np.pi * np.arange(m) / m
    st, ct = np.sin(theta)[:, None], np.cos(theta)[:, None]
    ring = np.stack(np.broadcast_arrays(st * np.cos(phi), st * np.sin(phi), ct), axis=-1).reshape(-1, 3)
    verts = np.concatenate([[[0.0, 0.0, 1.0]], ring, [[0.0, 0.0, -1.0]]])
    south = len(verts) - 1
    j = np.arange(m)
    jn = (j + 1) % m
    tris = [np.stack([np.zeros(m, int), 1 + j, 1 + jn], axis=1)]
    for i in range(n - 2):
        a, d = 1 + i * m + j, 1 + i * m + jn
        b, c = a + m, d + m
        tris += [np.stack([a, b, c], axis=1), np.stack([a, c, d], axis=1)]
    last = 1 + (n - 2) * m
    tris.append(np.stack([np.full(m, south), last + jn, last + j], axis=1))
    return verts, np.concatenate(tris).astype(np.int64)


def ellipsoid_mesh(T, center, scale: float, n: int = 16, min_radius: float = 1e-3) -> EllipsoidMesh:
    """Mesh of the ellipsoid with semi-axes ``|eigenvalue| * scale`` along the principal axes.

    ``T [3, 3]`` (its symmetric part is used), ``center [3]``; ``n`` rings (``>= 2``); radii
    below ``min_radius`` are raised to it so the mesh stays a closed surface.
    """
    if n < 2:
        raise ValueError("n must be >= 2")
    w, v = principal_axes(_as_tensor(T, 2)[None])
    w, v = w[0], v[0]
    radii = np.maximum(np.abs(w) * float(scale), min_radius)
    unit, tris = _unit_sphere(n)
    verts = unit @ (v * radii).T + np.asarray(center, dtype=np.float64)
    normals = unit @ (v / radii).T
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return EllipsoidMesh(verts, tris, normals, radii, w, v, bool(np.all(w > 0)))
