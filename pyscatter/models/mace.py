"""MACE force models: load MACE files safely and evaluate batches of structures as disjoint graphs.

Positions in Å, energies in eV, forces in eV/Å (minus the autograd gradient), float64 out, computed
in the model's float32 or float64. Files are TorchScript (loaded without trust) or whole-module
``torch.save`` pickles (loaded only when trusted: unpickling runs code from the file);
:func:`compile_mace` writes the former from the latter. Pairs come from per-structure full lists
with a Verlet skin (:mod:`pyscatter.models.neighbours`), cut at exactly the cutoff before each
pass; batches are split into forward passes of about ``max_edges_per_pass`` candidate edges.
Design notes and measurements: ``docs/models.md``.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pyscatter.models.base import Frame, ModelError, ModelOutput, check_species
from pyscatter.models.files import PICKLED_KINDS, file_kind, is_trusted, sha256, untrusted_error
from pyscatter.models.neighbours import FrameLists, NeighbourCache, SelectsLists, positions_array
from pyscatter.optional import import_optional

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
                import_optional("mace.modules")
                import_optional("mace.tools.scatter")

            yield
    finally:
        if saved is None:
            os.environ.pop(_FORCE_NO_WEIGHTS_ONLY, None)
        else:
            os.environ[_FORCE_NO_WEIGHTS_ONLY] = saved


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_module(path: Path, device: str, trust: bool = False) -> tuple[torch.nn.Module, str]:
    """The MACE model in ``path`` on ``device`` (parameters frozen, eval mode) and the file's sha256.

    TorchScript loads as such; a pickled module only if ``trust`` or its sha256 is in the user's trust
    file (else only what ``torch.load(weights_only=True)`` accepts, never a module). The bytes are read
    once: the file that was trusted is the file that is loaded.
    """
    if not path.is_file():
        raise ModelError(f"no MACE model file at {path}")
    kind = file_kind(path)
    if kind != "torchscript" and kind not in PICKLED_KINDS:
        raise ModelError(f"{path} is a {kind} model file, not a torch model file")
    data = path.read_bytes()
    digest = sha256(data)
    trusted = trust or is_trusted(digest)
    with _trusted_mace_loading():
        try:
            if kind == "torchscript":
                module = torch.jit.load(io.BytesIO(data), map_location=device)
            else:
                module = torch.load(io.BytesIO(data), map_location=device, weights_only=not trusted)
        except pickle.UnpicklingError as exc:
            if trusted:
                raise ModelError(f"cannot read {path}: {_first_line(exc)}") from exc
            raise untrusted_error(path) from None
        except Exception as exc:  # corrupt archives, unpickling errors, missing classes
            raise ModelError(f"cannot read {path}: {_first_line(exc)}") from exc
    if not isinstance(module, torch.nn.Module) or not all(
        hasattr(module, a) for a in ("atomic_numbers", "r_max", "interactions")
    ):
        raise ModelError(f"{path} holds a {type(module).__name__}, not a MACE model")
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval(), digest


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
    trust: bool = False,
) -> MACEModel:
    """Load a whole-module or TorchScript MACE file as a :class:`MACEModel`.

    dtype: compute precision (default: the file's, float32 for the published H2/Cu model).
    skin: Verlet skin of the cached neighbour lists, Å.
    head: output head of a multi-head model (required only if it has several).
    max_edges_per_pass: split batches into forward passes of at most this many candidate
        edges (pairs within cutoff + skin, counted at each structure's last list build; at
        least one structure per pass; ``None``: one pass). On CPU, much larger passes are
        slower per structure, not faster; on a GPU, pass ``None``.
    script: compile a whole-module file to TorchScript in memory (faster calls, same numbers);
        TorchScript files are used as they are.
    trust: load a pickled (whole-module) file, which runs code from it; without it such a file loads
        only if its sha256 is in the user's trust file (:mod:`pyscatter.models.files`).
    Raises :class:`ModelError` for missing, truncated, untrusted or non-MACE files and unusable dtypes.
    """
    path = Path(path)
    module, digest = _read_module(path, device, trust)
    module = _as_dtype(module, dtype, path)
    if script and not isinstance(module, torch.jit.ScriptModule):
        module = _script(module, path)
    model = MACEModel(
        module,
        name=path.name,
        identity=f"mace:{digest}:{str(next(module.parameters()).dtype)[6:]}",
        device=device,
        skin=skin,
        head_index=_head_index(module, head),
        max_edges_per_pass=max_edges_per_pass,
    )
    model.check_runs()
    return model


def compile_mace(
    in_path: str | os.PathLike, out_path: str | os.PathLike, dtype: torch.dtype | None = torch.float64,
    trust: bool = False,
) -> None:
    """Write a TorchScript copy of the whole-module MACE file ``in_path``, in ``dtype`` (None: its own).

    ``in_path`` is unpickled, so it must be trusted (``trust`` or the user's trust file)."""
    in_path = Path(in_path)
    if in_path.is_file() and file_kind(in_path) not in PICKLED_KINDS:
        raise ModelError(f"{in_path} is already TorchScript; compile_mace needs a whole-module file")
    module = _as_dtype(_read_module(in_path, "cpu", trust)[0], dtype, in_path)
    torch.jit.save(_script(module, in_path), str(out_path))


def _script(module: torch.nn.Module, path: Path) -> torch.jit.ScriptModule:
    """TorchScript of a whole MACE module, as mace's own ``*_compiled.model`` (compiles in place)."""
    with _trusted_mace_loading():
        jit = import_optional("e3nn.util.jit")
        try:
            return jit.compile(module)
        except Exception as exc:
            raise ModelError(f"{path.name}: TorchScript compilation failed ({_first_line(exc)}); use script=False") \
                from exc


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
        o3 = import_optional("e3nn.o3")
        blocks = import_optional("mace.modules")

        with torch.random.fork_rng():
            torch.manual_seed(seed)
            module = blocks.ScaleShiftMACE(
                r_max=r_max,
                num_bessel=8,
                num_polynomial_cutoff=5,
                max_ell=max_ell,
                interaction_cls=blocks.RealAgnosticResidualInteractionBlock,
                interaction_cls_first=blocks.RealAgnosticInteractionBlock,
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


@dataclass
class _Chunk:
    """Structures ``start:stop`` of the batch, evaluated in one forward pass.

    Candidate edges (node indices local to the chunk) hold all pairs closer than cutoff + skin
    at the reference positions, with r_ij = x_j - x_i + shift; structure: of each edge, in the chunk.
    """

    start: int
    stop: int
    sender: torch.Tensor  # (E,)
    receiver: torch.Tensor  # (E,)
    shifts: torch.Tensor  # (E, 3) float64, Å
    structure: torch.Tensor  # (E,)
    graph: dict[str, torch.Tensor]  # inputs fixed by frame and size: node_attrs, batch, ptr, head, cell


@dataclass
class _Batch:
    """MACE's form of a frame's lists (:class:`~pyscatter.models.neighbours.FrameLists`): forward passes."""

    lists: FrameLists
    chunks: list[_Chunk]
    graphs: dict[int, dict[str, torch.Tensor]]

    @property
    def reference(self) -> torch.Tensor:
        """(B, N, 3) positions, Å, at each structure's last list search."""
        return torch.from_numpy(self.lists.reference[0])


class MACEModel(SelectsLists):
    """A MACE potential evaluated on batches of structures sharing one :class:`Frame`.

    Structures are evaluated as disjoint unions of graphs, one forward pass per chunk of about
    ``max_edges_per_pass`` candidate edges (``None``: the whole batch in one pass); forces are minus the
    autograd gradient of the energy with respect to positions. Edges come from the cached per-structure
    lists (``skin``, Å) and are cut at exactly ``cutoff`` before each pass, so the result equals that of
    a fresh list (pairs sorted by (i, j, S): same edge order, same numbers).
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
        self.neighbours = NeighbourCache(self.cutoff, self.skin, full_list=True)
        self._cache: _Batch | None = None  # the batch of the last call

    def __call__(self, frame: Frame, positions: torch.Tensor, compute_forces: bool = True) -> ModelOutput:
        """Energies (B,) in eV and, if requested, forces (B, N, 3) in eV/Å, both float64; NaN for a structure
        with non-finite positions or two atoms at one place."""
        lists = self.neighbours.refresh(frame, positions_array(frame, positions))
        x = positions.detach().to(self.device, torch.float64)
        batch = self._cache = self._batch(lists)
        finite = torch.as_tensor(lists.finite, device=self.device)
        results = [
            self._evaluate(c, x[c.start : c.stop], finite[c.start : c.stop], compute_forces) for c in batch.chunks
        ]
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
            self.neighbours.clear()
            self._cache = None

    def _evaluate(
        self, chunk: _Chunk, x: torch.Tensor, finite: torch.Tensor, compute_forces: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One forward (and backward) pass: energies (b,) eV, forces (b, N, 3) eV/Å, float64.

        Structures with non-finite positions or an edge of zero length are evaluated without edges, at
        the origin, and get NaN."""
        flat = x.reshape(-1, 3)
        vectors = flat[chunk.receiver] - flat[chunk.sender] + chunk.shifts
        r2 = (vectors * vectors).sum(dim=1)
        bad = ~finite
        bad[chunk.structure[r2 == 0.0]] = True
        keep = r2 < self.cutoff**2
        if bad.any():
            flat = torch.where(bad.repeat_interleave(x.shape[1])[:, None], 0.0, flat)
            keep &= ~bad[chunk.structure]
        data = dict(chunk.graph)
        data["positions"] = flat.to(self.dtype, copy=True)
        data["edge_index"] = torch.stack((chunk.sender[keep], chunk.receiver[keep]))
        data["shifts"] = chunk.shifts[keep].to(self.dtype)
        with torch.set_grad_enabled(compute_forces):
            out = self.module(data, training=False, compute_force=compute_forces)
        energies = out["energy"].detach().double().masked_fill(bad, float("nan"))
        forces = None
        if compute_forces:
            forces = out["forces"].detach().double().reshape(x.shape).masked_fill(bad[:, None, None], float("nan"))
        return energies, forces

    def _batch(self, lists: FrameLists) -> _Batch:
        """The forward passes of ``lists``, brought up to date (chunks of searched structures rebuilt)."""
        batch = lists.state
        if batch is None:
            check_species(self, lists.frame.numbers)
            batch = lists.state = _Batch(lists, [], {})
            for start, stop in self._chunk_bounds([len(i) for i, _, _ in lists.pairs[0]]):
                batch.chunks.append(self._chunk(batch, start, stop))
            return batch
        stale = lists.changed[0]
        for k, c in enumerate(batch.chunks):
            if np.any((stale >= c.start) & (stale < c.stop)):
                batch.chunks[k] = self._chunk(batch, c.start, c.stop)
        return batch

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

    def _chunk(self, batch: _Batch, start: int, stop: int) -> _Chunk:
        frame = batch.lists.frame
        n = frame.n_atoms
        members = batch.lists.pairs[0][start:stop]
        sender = np.concatenate([i + k * n for k, (i, _, _) in enumerate(members)])
        receiver = np.concatenate([j + k * n for k, (_, j, _) in enumerate(members)])
        shifts = np.concatenate([s for _, _, s in members]) @ frame.cell
        sender = torch.as_tensor(sender, dtype=torch.int64, device=self.device)
        size = stop - start
        if size not in batch.graphs:
            batch.graphs[size] = self._graph(frame, size)
        return _Chunk(
            start,
            stop,
            sender,
            torch.as_tensor(receiver, dtype=torch.int64, device=self.device),
            torch.as_tensor(shifts, dtype=torch.float64, device=self.device),
            sender // n,
            batch.graphs[size],
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
