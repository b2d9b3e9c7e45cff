"""Tensor algebra: decompositions, rotations, projectors, Voigt notation, surfaces, meshes."""

import numpy as np
import pytest

from etgnn_core.tensors.algebra import (
    decompose_rank2,
    ellipsoid_mesh,
    full_rank3_to_voigt,
    full_rank4_to_voigt,
    is_positive_definite,
    isotropic_value,
    longitudinal_surface,
    longitudinal_value,
    principal_axes,
    random_orthogonal,
    rotate_tensor,
    symmetrize,
    voigt_rank3_to_full,
    voigt_rank4_to_full,
)

RANK_OF = {"none": 2, "symmetric": 2, "sym_last2": 3, "voigt": 4}


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def test_decomposition_sums_and_symmetries(rng):
    T = rng.standard_normal((5, 3, 3))
    p = decompose_rank2(T)
    np.testing.assert_allclose(p.isotropic + p.antisymmetric + p.symmetric_traceless, T, atol=1e-14)
    np.testing.assert_allclose(p.total, T, atol=1e-14)
    np.testing.assert_allclose(p.antisymmetric, -np.swapaxes(p.antisymmetric, -1, -2))
    np.testing.assert_allclose(p.symmetric_traceless, np.swapaxes(p.symmetric_traceless, -1, -2))
    np.testing.assert_allclose(np.trace(p.symmetric_traceless, axis1=-2, axis2=-1), 0, atol=1e-14)
    np.testing.assert_allclose(p.isotropic, isotropic_value(T)[:, None, None] * np.eye(3))
    np.testing.assert_allclose(isotropic_value(T), np.trace(T, axis1=1, axis2=2) / 3)


def test_principal_axes_and_positive_definite(rng):
    T = rng.standard_normal((4, 3, 3))
    w, v = principal_axes(T)
    S = 0.5 * (T + np.swapaxes(T, -1, -2))
    assert np.all(np.diff(w, axis=-1) >= 0)
    np.testing.assert_allclose(S @ v, v * w[:, None, :], atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(v), 1.0)
    A = rng.standard_normal((3, 3))
    assert is_positive_definite(A @ A.T + 0.1 * np.eye(3)) is True
    assert is_positive_definite(np.diag([1.0, 2.0, -3.0])) is False
    # the antisymmetric part does not matter
    assert is_positive_definite(np.eye(3) + 5 * np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 0]])) is True
    assert is_positive_definite(np.stack([np.eye(3), -np.eye(3)])).tolist() == [True, False]


@pytest.mark.parametrize("rank", [1, 2, 3, 4])
def test_rotate_composes_and_inverts(rng, rank):
    T = rng.standard_normal((3,) * rank)
    R1, R2 = random_orthogonal(rng), random_orthogonal(rng, reflection=True)
    np.testing.assert_allclose(rotate_tensor(rotate_tensor(T, R1), R2), rotate_tensor(T, R2 @ R1), atol=1e-12)
    np.testing.assert_allclose(rotate_tensor(rotate_tensor(T, R1), R1.T), T, atol=1e-12)
    assert not np.allclose(rotate_tensor(T, R1), T)


def test_rotate_rank2_matches_matrix_form_and_batches(rng):
    T = rng.standard_normal((6, 3, 3))
    R = random_orthogonal(rng)
    np.testing.assert_allclose(rotate_tensor(T, R, rank=2), R @ T @ R.T, atol=1e-12)
    v = rng.standard_normal(3)
    np.testing.assert_allclose(rotate_tensor(v, R), R @ v)
    # odd rank changes sign under inversion (polar tensor)
    e = rng.standard_normal((3, 3, 3))
    np.testing.assert_allclose(rotate_tensor(e, -np.eye(3)), -e)


def test_random_orthogonal(rng):
    for reflection, det in [(False, 1.0), (True, -1.0)]:
        R = random_orthogonal(rng, reflection=reflection)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.isclose(np.linalg.det(R), det)
    dets = {round(np.linalg.det(random_orthogonal(rng))) for _ in range(40)}
    assert dets == {-1, 1}
    np.testing.assert_allclose(random_orthogonal(7), random_orthogonal(7))
    # Haar: the mean of R over many draws is ~0
    mean = np.mean([random_orthogonal(rng, reflection=False) for _ in range(2000)], axis=0)
    assert np.abs(mean).max() < 0.1


@pytest.mark.parametrize("kind", ["none", "symmetric", "sym_last2", "voigt"])
def test_symmetrize_projector_commutes_with_O3(rng, kind):
    rank = RANK_OF[kind]
    T = rng.standard_normal((2,) + (3,) * rank)
    P = symmetrize(T, kind)
    np.testing.assert_allclose(symmetrize(P, kind), P, atol=1e-14)
    for reflection in (False, True):
        R = random_orthogonal(rng, reflection=reflection)
        np.testing.assert_allclose(
            symmetrize(rotate_tensor(T, R, rank=rank), kind), rotate_tensor(P, R, rank=rank), atol=1e-12
        )
    if kind != "none":
        assert not np.allclose(P, T)


def test_symmetrize_results_have_the_symmetries(rng):
    S = symmetrize(rng.standard_normal((3, 3)), "symmetric")
    np.testing.assert_allclose(S, S.T)
    e = symmetrize(rng.standard_normal((3, 3, 3)), "sym_last2")
    np.testing.assert_allclose(e, np.swapaxes(e, 1, 2))
    C = symmetrize(rng.standard_normal((3, 3, 3, 3)), "voigt")
    np.testing.assert_allclose(C, C.transpose(1, 0, 2, 3))
    np.testing.assert_allclose(C, C.transpose(0, 1, 3, 2))
    np.testing.assert_allclose(C, C.transpose(2, 3, 0, 1))
    with pytest.raises(ValueError, match="unknown symmetrize kind"):
        symmetrize(S, "bogus")
    with pytest.raises(ValueError):
        symmetrize(S, "voigt")


def test_voigt_rank3_round_trip(rng):
    e = symmetrize(rng.standard_normal((4, 3, 3, 3)), "sym_last2")
    V = full_rank3_to_voigt(e, check=True)
    assert V.shape == (4, 3, 6)
    np.testing.assert_allclose(voigt_rank3_to_full(V), e)
    V6 = rng.standard_normal((3, 6))
    np.testing.assert_allclose(full_rank3_to_voigt(voigt_rank3_to_full(V6)), V6)
    # explicit entries: J = 4 <-> yz, 5 <-> xz, 6 <-> xy, no factor 2
    full = voigt_rank3_to_full(V6)
    assert full[0, 1, 2] == full[0, 2, 1] == V6[0, 3]
    assert full[2, 0, 2] == V6[2, 4] and full[1, 0, 1] == V6[1, 5]
    bad = rng.standard_normal((3, 3, 3))
    with pytest.raises(ValueError, match="e_ijk = e_ikj"):
        full_rank3_to_voigt(bad, check=True)


def test_voigt_rank4_round_trip(rng):
    C = symmetrize(rng.standard_normal((2, 3, 3, 3, 3)), "voigt")
    V = full_rank4_to_voigt(C, check=True)
    assert V.shape == (2, 6, 6)
    np.testing.assert_allclose(V, np.swapaxes(V, -1, -2))
    np.testing.assert_allclose(voigt_rank4_to_full(V, check=True), C)
    assert V[0, 3, 5] == C[0, 1, 2, 0, 1] and V[0, 0, 4] == C[0, 0, 0, 2, 0]
    M = rng.standard_normal((6, 6))
    M = M + M.T
    np.testing.assert_allclose(full_rank4_to_voigt(voigt_rank4_to_full(M)), M)


@pytest.mark.parametrize(
    "perm, message",
    [((1, 0, 2, 3), "C_ijkl = C_jikl"), ((0, 1, 3, 2), "C_ijkl = C_ijlk"), ((2, 3, 0, 1), "C_ijkl = C_klij")],
)
def test_voigt_rank4_check_names_the_symmetry(rng, perm, message):
    # a tensor that has every Voigt symmetry except those implied by `perm`
    A = rng.standard_normal((3, 3, 3, 3))
    if perm == (2, 3, 0, 1):
        A = 0.5 * (A + A.transpose(1, 0, 2, 3))
        A = 0.5 * (A + A.transpose(0, 1, 3, 2))  # minor symmetric, not major
    elif perm == (0, 1, 3, 2):
        A = 0.5 * (A + A.transpose(1, 0, 2, 3))  # ij symmetric, kl not
    with pytest.raises(ValueError, match=message):
        full_rank4_to_voigt(A, check=True)
    M = rng.standard_normal((6, 6))
    with pytest.raises(ValueError, match="C_IJ = C_JI"):
        voigt_rank4_to_full(M, check=True)


def test_longitudinal_surface_is_rotation_covariant(rng):
    e = rng.standard_normal((3, 3, 3))
    x, y, z, value = longitudinal_surface(e, n_theta=9, n_phi=17)
    assert x.shape == value.shape == (9, 17)
    pts = np.stack([x, y, z], axis=-1)
    np.testing.assert_allclose(np.linalg.norm(pts, axis=-1), np.abs(value), atol=1e-12)
    assert (value > 0).any() and (value < 0).any()
    for reflection in (False, True):
        R = random_orthogonal(rng, reflection=reflection)
        xr, yr, zr, vr = longitudinal_surface(rotate_tensor(e, R), n_theta=9, n_phi=17)
        pr = np.stack([xr, yr, zr], axis=-1)
        theta = np.linspace(0, np.pi, 9)[:, None]
        phi = np.linspace(0, 2 * np.pi, 17)[None, :]
        n = np.stack(np.broadcast_arrays(np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)), -1)
        m = n @ R  # rows: R^T n, the directions that R maps onto the grid
        # value of the rotated tensor at n = value of the original at R^T n
        np.testing.assert_allclose(vr, longitudinal_value(e, m), atol=1e-12)
        # the rotated surface is the original surface (evaluated at R^T n) rotated by R
        np.testing.assert_allclose(pr, (np.abs(longitudinal_value(e, m))[..., None] * m) @ R.T, atol=1e-12)
    np.testing.assert_allclose(longitudinal_surface(full_rank3_to_voigt(e))[3], longitudinal_surface(e)[3])


def test_ellipsoid_mesh_axes_and_flag():
    T = np.diag([1.0, 2.0, -3.0])
    m = ellipsoid_mesh(T, center=[1.0, 2.0, 3.0], scale=0.5, n=8)
    assert m.positive_definite is False
    np.testing.assert_allclose(m.eigenvalues, [-3.0, 1.0, 2.0])
    np.testing.assert_allclose(np.sort(m.radii), [0.5, 1.0, 1.5])
    d = m.vertices - [1.0, 2.0, 3.0]
    np.testing.assert_allclose(np.abs(d).max(axis=0), [0.5, 1.0, 1.5], atol=1e-12)
    # every vertex is on the ellipsoid x^2/a^2 + y^2/b^2 + z^2/c^2 = 1
    np.testing.assert_allclose(((d / [0.5, 1.0, 1.5]) ** 2).sum(axis=1), 1.0, atol=1e-12)
    # closed surface: each edge shared by two triangles; faces counter-clockwise from outside
    tri = m.triangles
    assert tri.min() == 0 and tri.max() == len(m.vertices) - 1
    edges = np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert np.all(counts == 2)
    a, b, c = (m.vertices[tri[:, i]] for i in range(3))
    outward = np.einsum("ij,ij->i", np.cross(b - a, c - a), (a + b + c) / 3 - [1.0, 2.0, 3.0])
    assert np.all(outward > 0)
    assert np.all(np.einsum("ij,ij->i", m.normals, d) > 0)
    assert ellipsoid_mesh(np.eye(3), np.zeros(3), 1.0).positive_definite is True


def test_ellipsoid_mesh_rotated_tensor(rng):
    R = random_orthogonal(rng, reflection=False)
    T = R @ np.diag([0.5, 1.0, 2.0]) @ R.T
    m = ellipsoid_mesh(T, np.zeros(3), 1.0, n=6)
    local = m.vertices @ R  # back to the principal frame
    np.testing.assert_allclose(((local / [0.5, 1.0, 2.0]) ** 2).sum(axis=1), 1.0, atol=1e-10)
