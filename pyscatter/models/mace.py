"""MACE force model: batches as disjoint graphs, with Verlet (skin) neighbour lists.

Positions in Å, energies in eV, forces in eV/Å. Model files are either a whole-module
``torch.save`` of a MACE model or a TorchScript MACE file (``e3nn.util.jit.compile``, as
mace's own ``*_compiled.model``); :func:`compile_mace` writes the latter from the former, and
:func:`load_mace` scripts whole-module files in memory by default (faster calls, same numbers).

Batches are split into forward passes of about ``max_edges_per_pass`` candidate edges: on CPU
the cost per structure is flat up to a few structures per pass and grows beyond, as tensors of
many MB leave the caches and are page-faulted afresh by the allocator on every call (measured
for 32 thermal Cu(111)+H2 slabs in float64: 1.7x the cost per structure in one pass as in
passes of two).

Loading note: e3nn 0.4.4 reads its ``constants.pt`` (which pickles ``slice``) with a plain
``torch.load``, which fails under torch >= 2.6's ``weights_only=True`` default; mace works
around it by setting ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` process-wide on ``import mace``.
Here both imports and the (trusted, user-named) model file load run inside
:func:`_trusted_mace_loading`, which allows ``slice`` only for its duration and restores the
environment afterwards, so no unsafe ``torch.load`` default leaks into the caller's process.
"""

from __future__ import annotations

import os
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import vesin

from pyscatter.models.base import Frame, ModelError, ModelOutput, file_sha256

SUPPORTED_DTYPES = (torch.float32, torch.float64)
DEFAULT_SKIN = 1.0  # Å
DEFAULT_MAX_EDGES_PER_PASS = 8192  # two 56-atom slabs with the default skin
_FORCE_NO_WEIGHTS_ONLY = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


@contextmanager
def _trusted_mace_loading() -> Iterator[None]:
    """Import mace/e3nn and unpickle a trusted model without leaking torch.load policy.

    Allows ``slice`` (e3nn's constants.pt) to weights-only loads for the duration, and gives
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` back its previous value (``import mace`` sets it to 1).
    mace's import-time notices go to stderr, so that stdout (``--json``) stays machine-readable.
    """
    saved = os.environ.get(_FORCE_NO_WEIGHTS_ONLY)
    try:
        with torch.serialization.safe_globals([slice]):
            with redirect_stdout(sys.stderr):
                import mace.modules
                import mace.tools.scatter  # noqa: F401

            yield
    finally:
        if saved is None:
            os.environ.pop(_FORCE_NO_WEIGHTS_ONLY, None)
        else:
            os.environ[_FORCE_NO_WEIGHTS_ONLY] = saved


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _file_kind(path: Path) -> str:
    """``"torchscript"`` or ``"module"`` (pickled ``torch.save``), judged from the content."""
    if not path.is_file():
        raise ModelError(f"no MACE model file at {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile as exc:
            raise ModelError(f"{path} is a truncated or corrupt zip archive ({exc})") from exc
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return "torchscript"
        if any(n.endswith("/data.pkl") for n in names):
            return "module"
        raise ModelError(f"{path} is a zip archive but not a torch file")
    if head.startswith(b"PK"):
        raise ModelError(f"{path} is a truncated or corrupt zip archive")
    if head[:1] == b"\x80":  # legacy (non-zip) torch.save pickle
        return "module"
    raise ModelError(f"{path} is not a torch model file")


def _read_module(path: Path, device: str) -> torch.nn.Module:
    """The model in ``path`` on ``device``, parameters frozen, in eval mode."""
    kind = _file_kind(path)
    try:
        with _trusted_mace_loading():
            if kind == "torchscript":
                module = torch.jit.load(str(path), map_location=device)
            else:
                module = torch.load(path, map_location=device, weights_only=False)
    except ModelError:
        raise
    except Exception as exc:  # corrupt archives, unpickling errors, missing classes
        raise ModelError(f"cannot read {path}: {_first_line(exc)}") from exc
    if not isinstance(module, torch.nn.Module) or not all(
        hasattr(module, a) for a in ("atomic_numbers", "r_max", "interactions")
    ):
        raise ModelError(f"{path} holds a {type(module).__name__}, not a MACE model")
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


def _as_dtype(module: torch.nn.Module, dtype: torch.dtype | None, path: Path) -> torch.nn.Module:
    """``module`` in ``dtype`` (its own dtype if None); converts in place (module is ours)."""
    own = next(module.parameters()).dtype
    dtype = own if dtype is None else dtype
    if dtype not in SUPPORTED_DTYPES:
        raise ModelError(f"{path.name}: MACE cannot run in {dtype}; use torch.float32 or torch.float64")
    return module if dtype == own else module.to(dtype)


def _head_index(module: torch.nn.Module, head: str | None) -> int:
    heads = list(getattr(module, "heads", None) or ["Default"])
    if head is None:
        if len(heads) == 1:
            return 0
        raise ModelError(f"model has heads {heads}; choose one with head=")
    if head not in heads:
        raise ModelError(f"model has no head {head!r}; heads are {heads}")
    return heads.index(head)


def load_mace(
    path: str | os.PathLike,
    dtype: torch.dtype | None = None,
    device: str = "cpu",
    skin: float = DEFAULT_SKIN,
    head: str | None = None,
    max_edges_per_pass: int | None = DEFAULT_MAX_EDGES_PER_PASS,
    script: bool = True,
) -> MACEModel:
    """Load a whole-module or TorchScript MACE file as a :class:`MACEModel`.

    dtype: compute precision (default: the file's, float32 for the published H2/Cu model).
    skin: Verlet skin of the cached neighbour lists, Å.
    head: output head of a multi-head model (required only if it has several).
    max_edges_per_pass: split batches into forward passes of at most this many candidate
        edges (pairs within cutoff + skin, counted at each structure's last list build; at
        least one structure per pass; ``None``: one pass). On CPU, much larger passes are
        slower per structure, not faster; on a GPU, pass ``None``.
    script: compile a whole-module file to TorchScript in memory (about 2 s, 5-15 % faster
        calls, same numbers); TorchScript files are used as they are.
    Raises :class:`ModelError` for missing, truncated or non-MACE files and unusable dtypes.
    """
    path = Path(path)
    module = _as_dtype(_read_module(path, device), dtype, path)
    if script and not isinstance(module, torch.jit.ScriptModule):
        module = _script(module, path)
    model = MACEModel(
        module,
        name=path.name,
        identity=f"mace:{file_sha256(str(path))}:{str(next(module.parameters()).dtype)[6:]}",
        device=device,
        skin=skin,
        head_index=_head_index(module, head),
        max_edges_per_pass=max_edges_per_pass,
    )
    model.check_runs()
    return model


def compile_mace(
    in_path: str | os.PathLike, out_path: str | os.PathLike, dtype: torch.dtype = torch.float64
) -> None:
    """Write a TorchScript copy of the whole-module MACE file ``in_path``, in ``dtype``."""
    in_path = Path(in_path)
    if _file_kind(in_path) != "module":
        raise ModelError(f"{in_path} is already TorchScript; compile_mace needs a whole-module file")
    module = _as_dtype(_read_module(in_path, "cpu"), dtype, in_path)
    torch.jit.save(_script(module, in_path), str(out_path))


def _script(module: torch.nn.Module, path: Path) -> torch.jit.ScriptModule:
    """TorchScript of a whole MACE module, as mace's own ``*_compiled.model`` (compiles in place)."""
    try:
        with _trusted_mace_loading():
            from e3nn.util import jit

            return jit.compile(module)
    except Exception as exc:
        raise ModelError(
            f"{path.name}: TorchScript compilation failed ({_first_line(exc)}); use script=False"
        ) from exc


def random_mace(
    atomic_numbers: tuple[int, ...] = (1, 29),
    *,
    hidden_irreps: str = "16x0e",
    correlation: int = 2,
    max_ell: int = 3,
    num_interactions: int = 2,
    r_max: float = 5.0,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> torch.nn.Module:
    """A ScaleShiftMACE with random weights and zero atomic energies (tests, benchmarks).

    Same block types as the published H2/Cu model and MACE-MP-0 (real agnostic residual
    interactions, Bessel radial basis, 64x3 radial MLP); r_max in Å.
    """
    with _trusted_mace_loading():
        from e3nn import o3
        from mace.modules import (
            RealAgnosticInteractionBlock,
            RealAgnosticResidualInteractionBlock,
            ScaleShiftMACE,
        )

        with torch.random.fork_rng():
            torch.manual_seed(seed)
            module = ScaleShiftMACE(
                r_max=r_max,
                num_bessel=8,
                num_polynomial_cutoff=5,
                max_ell=max_ell,
                interaction_cls=RealAgnosticResidualInteractionBlock,
                interaction_cls_first=RealAgnosticInteractionBlock,
                num_interactions=num_interactions,
                num_elements=len(atomic_numbers),
                hidden_irreps=o3.Irreps(hidden_irreps),
                MLP_irreps=o3.Irreps("16x0e"),
                atomic_energies=np.zeros(len(atomic_numbers)),
                avg_num_neighbors=40.0,
                atomic_numbers=list(atomic_numbers),
                correlation=correlation,
                gate=torch.nn.functional.silu,
                radial_MLP=[64, 64, 64],
                atomic_inter_scale=1.0,
                atomic_inter_shift=0.0,
            )
    return module.to(dtype).eval()


Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]  # sender i, receiver j, cell shift S


@dataclass
class _Chunk:
    """Structures ``start:stop`` of the batch, evaluated in one forward pass.

    Candidate edges (node indices local to the chunk) hold all pairs closer than cutoff + skin
    at the reference positions, with r_ij = x_j - x_i + shift.
    """

    start: int
    stop: int
    sender: torch.Tensor  # (E,)
    receiver: torch.Tensor  # (E,)
    shifts: torch.Tensor  # (E, 3) float64, Å
    graph: dict[str, torch.Tensor]  # inputs fixed by frame and size: node_attrs, batch, ptr, head, cell


@dataclass
class _NeighbourCache:
    """Per-structure pair lists and the reference positions (B, N, 3), Å, they were built at."""

    frame: Frame
    reference: torch.Tensor
    pairs: list[Pairs]
    chunks: list[_Chunk]


def _same_frame(a: Frame, b: Frame) -> bool:
    return a is b or (
        a.pbc == b.pbc and np.array_equal(a.numbers, b.numbers) and np.array_equal(a.cell, b.cell)
    )


class MACEModel:
    """A MACE potential evaluated on batches of structures sharing one :class:`Frame`.

    Structures are evaluated as disjoint unions of graphs, one forward pass per chunk of about
    ``max_edges_per_pass`` candidate edges (``None``: the whole batch in one pass); forces are minus the
    autograd gradient of the energy with respect to positions. Edges come from per-structure
    vesin lists with a ``skin`` (Å), rebuilt for a structure once any of its atoms moved more
    than ``skin / 2``, and are cut at exactly ``cutoff`` before each pass, so the result equals
    that of a fresh list (pairs are kept sorted by (i, j, S): same edge order, same numbers).
    """

    def __init__(
        self,
        module: torch.nn.Module,
        *,
        name: str,
        identity: str,
        device: str,
        skin: float,
        head_index: int,
        max_edges_per_pass: int | None,
    ):
        if skin < 0:
            raise ModelError(f"skin must be >= 0 Å, got {skin}")
        self.module = module
        self.name = name
        self.identity = identity
        self.device = torch.device(device)
        self.dtype: torch.dtype = next(module.parameters()).dtype
        self.cutoff = float(module.r_max)
        self.skin = float(skin)
        self.max_edges_per_pass = max_edges_per_pass
        model_numbers = [int(z) for z in module.atomic_numbers]
        self.species = frozenset(model_numbers)
        self._element_index = {z: k for k, z in enumerate(model_numbers)}
        self._head_index = head_index
        self._neighbour_list = vesin.NeighborList(cutoff=self.cutoff + self.skin, full_list=True, n_threads=1)
        self._cache: _NeighbourCache | None = None

    def __call__(self, frame: Frame, positions: torch.Tensor, compute_forces: bool = True) -> ModelOutput:
        """Energies (B,) in eV and, if requested, forces (B, N, 3) in eV/Å, both float64."""
        if positions.ndim != 3 or positions.shape[1:] != (frame.n_atoms, 3):
            raise ValueError(
                f"positions must have shape (B, {frame.n_atoms}, 3), got {tuple(positions.shape)}"
            )
        x = positions.detach().to(self.device, torch.float64)
        cache = self._refresh_neighbours(frame, x)
        results = [self._evaluate(c, x[c.start : c.stop], compute_forces) for c in cache.chunks]
        energies = torch.cat([e for e, _ in results]).to(positions.device)
        forces = None
        if compute_forces:
            forces = torch.cat([f for _, f in results]).to(positions.device)
        return ModelOutput(energies, forces)

    def check_runs(self) -> None:
        """Evaluate a dimer of the model's lightest element; ModelError if that fails."""
        z = min(self.species)
        frame = Frame(np.array([z, z]), np.eye(3) * 20.0, (False, False, False))
        x = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, 0.8]]], dtype=torch.float64)
        try:
            self(frame, x)
        except Exception as exc:
            raise ModelError(f"{self.name} cannot run in {self.dtype}: {_first_line(exc)}") from exc
        finally:
            self._cache = None

    def _evaluate(
        self, chunk: _Chunk, x: torch.Tensor, compute_forces: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One forward (and backward) pass: energies (b,) eV, forces (b, N, 3) eV/Å, float64."""
        flat = x.reshape(-1, 3)
        data = dict(chunk.graph)
        data["positions"] = flat.to(self.dtype, copy=True)
        data["edge_index"], data["shifts"] = self._edges_within_cutoff(chunk, flat)
        with torch.set_grad_enabled(compute_forces):
            out = self.module(data, training=False, compute_force=compute_forces)
        energies = out["energy"].detach().double()
        forces = out["forces"].detach().double().reshape(x.shape) if compute_forces else None
        return energies, forces

    def _edges_within_cutoff(self, chunk: _Chunk, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """edge_index (2, E) and shifts (E, 3) of the candidate pairs now closer than the cutoff."""
        vectors = x[chunk.receiver] - x[chunk.sender] + chunk.shifts
        keep = (vectors * vectors).sum(dim=1) < self.cutoff**2
        edge_index = torch.stack((chunk.sender[keep], chunk.receiver[keep]))
        return edge_index, chunk.shifts[keep].to(self.dtype)

    def _refresh_neighbours(self, frame: Frame, x: torch.Tensor) -> _NeighbourCache:
        """Rebuild the pair lists of structures that moved more than skin/2 (all, if new frame)."""
        cache = self._cache
        if cache is None or len(cache.pairs) != len(x) or not _same_frame(cache.frame, frame):
            self._cache = self._new_cache(frame, x)
            return self._cache
        moved = (x - cache.reference).norm(dim=-1).amax(dim=1) > self.skin / 2
        stale = moved.nonzero().flatten().tolist()
        for b in stale:
            cache.pairs[b] = self._pairs(frame, x[b])
            cache.reference[b] = x[b]
        for k, c in enumerate(cache.chunks):
            if any(c.start <= b < c.stop for b in stale):
                cache.chunks[k] = self._chunk(frame, cache.pairs, c.start, c.stop, c.graph)
        return cache

    def _new_cache(self, frame: Frame, x: torch.Tensor) -> _NeighbourCache:
        unknown = {int(z) for z in frame.numbers} - self.species
        if unknown:
            raise ModelError(f"model {self.name!r} has no parameters for atomic numbers {sorted(unknown)}")
        pairs = [self._pairs(frame, xb) for xb in x]
        graphs: dict[int, dict[str, torch.Tensor]] = {}
        chunks = []
        for start, stop in self._chunk_bounds([len(i) for i, _, _ in pairs]):
            size = stop - start
            graph = graphs.setdefault(size, self._graph(frame, size))
            chunks.append(self._chunk(frame, pairs, start, stop, graph))
        return _NeighbourCache(frame, x.clone(), pairs, chunks)

    def _chunk_bounds(self, n_edges: list[int]) -> list[tuple[int, int]]:
        """Consecutive structure ranges of at most max_edges_per_pass candidate edges (>= 1 structure)."""
        limit = self.max_edges_per_pass
        bounds, start, total = [], 0, 0
        for b, n in enumerate(n_edges):
            if limit is not None and b > start and total + n > limit:
                bounds.append((start, b))
                start, total = b, 0
            total += n
        bounds.append((start, len(n_edges)))
        return bounds

    def _pairs(self, frame: Frame, x: torch.Tensor) -> Pairs:
        """(i, j, S) of all pairs closer than cutoff + skin in one structure, sorted."""
        i, j, s = self._neighbour_list.compute(
            points=x.cpu().numpy(), box=frame.cell, periodic=list(frame.pbc), quantities="ijS"
        )
        order = np.lexsort((s[:, 2], s[:, 1], s[:, 0], j, i))
        return i[order], j[order], s[order]

    def _chunk(
        self, frame: Frame, pairs: list[Pairs], start: int, stop: int, graph: dict[str, torch.Tensor]
    ) -> _Chunk:
        n = frame.n_atoms
        members = pairs[start:stop]
        sender = np.concatenate([i + k * n for k, (i, _, _) in enumerate(members)])
        receiver = np.concatenate([j + k * n for k, (_, j, _) in enumerate(members)])
        shifts = np.concatenate([s for _, _, s in members]) @ frame.cell
        return _Chunk(
            start,
            stop,
            torch.as_tensor(sender, dtype=torch.int64, device=self.device),
            torch.as_tensor(receiver, dtype=torch.int64, device=self.device),
            torch.as_tensor(shifts, dtype=torch.float64, device=self.device),
            graph,
        )

    def _graph(self, frame: Frame, n_structures: int) -> dict[str, torch.Tensor]:
        """Model inputs that depend only on the frame and the number of structures."""
        n = frame.n_atoms
        elements = torch.tensor([self._element_index[int(z)] for z in frame.numbers], device=self.device)
        one_hot = torch.nn.functional.one_hot(elements, len(self._element_index)).to(self.dtype)
        cell = torch.as_tensor(frame.cell, dtype=self.dtype, device=self.device)
        return {
            "node_attrs": one_hot.repeat(n_structures, 1),
            "batch": torch.arange(n_structures, device=self.device).repeat_interleave(n),
            "ptr": torch.arange(0, (n_structures + 1) * n, n, device=self.device),
            "head": torch.full((n_structures,), self._head_index, dtype=torch.int64, device=self.device),
            "cell": cell.repeat(n_structures, 1),
        }
