"""Commands ``pyscatter model compile``, ``model trust``, ``model finetune`` and ``pyscatter bench force-call``."""

from __future__ import annotations

import contextlib
import json
import sys

from pyscatter.cli.arguments import CommandParser, add_trust_argument, positive_int

DTYPES = ("float32", "float64")
BATCH_SIZES_HELP = "1 8 32 128"
"""``pyscatter.bench.BATCH_SIZES`` as the help shows it (that module imports torch; tests keep the two equal)."""


def add_commands(commands, model_commands) -> None:
    """Register ``model compile``, ``model finetune`` (under ``model_commands``) and ``bench force-call``."""
    compile_ = model_commands.add_parser("compile", help="TorchScript file from a whole-module MACE file")
    compile_.add_argument("input", help="whole-module MACE file (torch.save)")
    compile_.add_argument("output", help="TorchScript file to write")
    compile_.add_argument("--dtype", choices=DTYPES, default=None, help="precision (default: the model's)")
    add_trust_argument(compile_)
    compile_.set_defaults(handler=_compile)

    trust = model_commands.add_parser(
        "trust", help="trust a pickled model file (its sha256) so that it loads without --trust-model"
    )
    trust.add_argument("file", help="model file; loading a pickled model runs code from it")
    trust.set_defaults(handler=_trust)

    finetune = model_commands.add_parser(
        "finetune", help="fine-tune a MACE foundation model with frozen layers (mace's trainer)"
    )
    finetune.add_argument("--foundation", required=True, help="whole-module MACE file")
    finetune.add_argument("--train", required=True, help="extended XYZ with energies (eV) and forces (eV/Å)")
    finetune.add_argument("--valid", default=None, help="validation set (default: 10%% of --train)")
    finetune.add_argument(
        "--freeze", type=int, required=True, choices=range(4), metavar="K",
        help="freeze the first K of node_embedding, interactions, products, readouts (0-3)",
    )
    finetune.add_argument("--epochs", type=positive_int, default=10, help="training epochs (default 10)")
    finetune.add_argument(
        "--out", required=True, help="TorchScript model to write (use with --model); mace's log goes to OUT.log"
    )
    finetune.add_argument("--dtype", choices=DTYPES, default=None, help="of --out (default: the foundation's)")
    finetune.add_argument("--E0s", default="estimated", dest="e0s", help="mace's --E0s (default estimated)")
    finetune.add_argument("--energy-key", default="energy", help="energy key in the data (default energy)")
    finetune.add_argument("--forces-key", default="forces", help="forces key in the data (default forces)")
    finetune.add_argument("--batch-size", type=positive_int, default=None, help="default: mace's")
    finetune.add_argument("--lr", type=float, default=None, help="learning rate (default: mace's)")
    finetune.add_argument("--seed", type=int, default=0)
    add_trust_argument(finetune)
    finetune.set_defaults(handler=_finetune)

    bench = commands.add_parser("bench", help="benchmarks")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True, parser_class=CommandParser)
    force_call = bench_commands.add_parser(
        "force-call", help="ms per force call and per structure in batches (Table 1 form)"
    )
    force_call.add_argument(
        "--model", action="append", required=True, help="'emt' or a model file; repeat for several rows"
    )
    force_call.add_argument("--dtype", choices=DTYPES, nargs="+", default=None, help="default: each model's own")
    force_call.add_argument(
        "--batch-sizes", type=positive_int, nargs="+", default=None,
        help=f"default {BATCH_SIZES_HELP} (pyscatter.bench.BATCH_SIZES)",
    )
    force_call.add_argument(
        "--structure", default=None, help="file ASE reads, treated as a slab (default: built 56-atom Cu(111)+H2)"
    )
    force_call.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1)")
    force_call.add_argument(
        "--no-reference", action="store_true", help="skip mace's MACECalculator reference for MACE files"
    )
    force_call.add_argument(
        "--teacher", default=None,
        help="time this model (e.g. a surrogate's MACE teacher) at every batch size too and compare each --model's "
        "best ms per structure with its best (ratio = model / teacher)",
    )
    force_call.add_argument("--quick", action="store_true", help="fewer repeats, smaller batch cap")
    force_call.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    add_trust_argument(force_call)
    force_call.set_defaults(handler=_bench_force_call)


def _torch_dtype(name: str | None):
    import torch

    return None if name is None else getattr(torch, name)


def _describe(model) -> str:
    from ase.data import chemical_symbols

    species = " ".join(chemical_symbols[z] for z in sorted(model.species))
    return f"{str(model.dtype).removeprefix('torch.')}, species {species}, cutoff {model.cutoff:g} Å"


def _compile(args) -> int:
    from pyscatter.models.mace import compile_mace, load_mace

    compile_mace(args.input, args.output, _torch_dtype(args.dtype), trust=args.trust_model)
    print(f"wrote {args.output} (TorchScript, {_describe(load_mace(args.output))})")
    return 0


def _trust(args) -> int:
    from pyscatter.models.files import file_kind, trust_file, trust_path

    kind = file_kind(args.file)
    digest = trust_file(args.file)
    print(f"trusted {args.file} ({kind}, sha256 {digest}) in {trust_path()}")
    return 0


def _finetune(args) -> int:
    from pyscatter.models import load_model
    from pyscatter.models.mace_finetune import finetune_mace, frozen_prefixes

    out = finetune_mace(
        args.foundation, args.train, args.out, freeze=args.freeze, epochs=args.epochs, valid=args.valid,
        dtype=_torch_dtype(args.dtype), e0s=args.e0s, energy_key=args.energy_key, forces_key=args.forces_key,
        batch_size=args.batch_size, lr=args.lr, seed=args.seed, trust=args.trust_model,
    )
    frozen = ", ".join(frozen_prefixes(args.freeze)) or "nothing"
    print(f"wrote {out} (TorchScript, {_describe(load_model(str(out)))}; frozen: {frozen}); training log {out}.log")
    return 0


def _bench_force_call(args) -> int:
    import time
    import warnings

    import torch

    from pyscatter.bench import (
        BATCH_SIZES,
        FULL,
        QUICK,
        environment,
        format_table,
        mace_calculator,
        slab_structure,
        time_against_reference,
        time_against_teacher,
    )
    from pyscatter.models import load_model
    from pyscatter.models.base import check_species
    from pyscatter.models.mace import MACEModel

    warnings.filterwarnings("ignore")  # ase's FHI-aims reader, mace/torch deprecation notices
    torch.set_num_threads(args.threads)
    budget = QUICK if args.quick else FULL
    batch_sizes = tuple(args.batch_sizes or BATCH_SIZES)
    name, frame, base = slab_structure(args.structure)
    started = time.perf_counter()
    rows = []
    with contextlib.redirect_stdout(sys.stderr):  # mace prints notices on import; stdout is the result
        if args.teacher is not None:
            teacher = load_model(args.teacher, trust=args.trust_model)
            students = [load_model(spec, dtype, args.trust_model) for spec in args.model for dtype in args.dtype or [None]]
            for model in (teacher, *students):
                check_species(model, frame.numbers)
            rows += time_against_teacher(
                teacher.name, [(f"pyscatter {type(m).__name__} {m.name}", m) for m in students],
                (f"pyscatter {type(teacher).__name__}", teacher), frame, base, batch_sizes, budget,
            )
        else:
            for spec in args.model:
                for dtype in args.dtype or [None]:
                    model = load_model(spec, dtype, args.trust_model)
                    check_species(model, frame.numbers)
                    reference = None
                    if isinstance(model, MACEModel) and not args.no_reference:
                        reference = ("mace MACECalculator", mace_calculator(spec, model.dtype))
                    backend = f"pyscatter {type(model).__name__}"
                    rows += time_against_reference(
                        model.name, [(backend, model)], reference, frame, base, batch_sizes, budget
                    )
                    print(f"  timed {model.name} [{str(model.dtype).removeprefix('torch.')}]", flush=True)
    if args.json:
        result = {
            "structure": name, "n_atoms": frame.n_atoms, **environment(), "quick": args.quick,
            "seconds": round(time.perf_counter() - started, 1), "rows": [r.as_dict() for r in rows],
        }
        print(json.dumps(result))
    else:
        print(format_table(rows, batch_sizes))
        for row in rows[1:] if args.teacher is not None else []:
            best = min(ms for ms in row.per_structure_ms.values() if ms is not None)
            print(f"{row.backend}: {row.reference_ms / best:.1f}x cheaper per structure than the teacher (best batch size of each)")
    return 0
