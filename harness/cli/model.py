"""`harness model`: make and list models; `model synth` writes synthetic models of real shapes."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from harness.errors import UserError
from harness.format import fmt, render
from harness.models.synth import DEFAULT_QUANT, make_synth
from harness.models.synth.ggml import check_quant
from harness.models.synth.hf import write_hf
from harness.models.synth.shapes import custom_shape, get_preset, load_presets, preset_names

HELP = "synthetic models of real shapes (random weights) and the shape presets"
DESCRIPTION = """\
subcommands:
  synth    write a random-weight model with a real model's shape and quantization:
           decode and prefill speed of a dense model depend on its shape and
           quantization, not on its weights' values
  shapes   list the shape presets (dimensions from each model's published config.json)

examples:
  harness model synth --shape llama3-8b --quant q4_k_m --out llama3-8b-q4km.gguf
  harness model synth --like real.gguf --out twin.gguf      # same metadata, tokenizer,
                                                            # per-tensor types; new weights
  harness model synth --arch llama --hidden 1024 --ffn 4096 --layers 8 --heads 16 \\
      --kv-heads 4 --vocab 32000 --quant q8_0 --out custom.gguf
  harness model synth --shape qwen2.5-7b --format hf --out qwen7b-shape/
      # config.json + tokenizer for: vllm serve qwen7b-shape/ --load-format dummy
  harness bench --model synth:llama3-8b-q4_k_m     # generated once into .models/
"""

DIMS = ("hidden", "ffn", "layers", "heads", "kv_heads", "vocab", "head_dim", "context")
REQUIRED_DIMS = ("hidden", "ffn", "layers", "heads", "vocab")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="model_command", metavar="SUBCOMMAND")
    s = sub.add_parser("synth", help="write a random-weight model of a real shape",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    g = s.add_argument_group("what shape (one of)")
    g.add_argument("--shape", default=None,
                   help="a preset name (harness model shapes lists them); custom "
                        "dimension flags given with it override the preset's")
    g.add_argument("--like", type=Path, default=None,
                   help="a real GGUF: copy its architecture, metadata, tokenizer and "
                        "per-tensor quantization types")
    g.add_argument("--arch", default=None, help="custom shape: llama or qwen2")
    for dim in DIMS:
        g.add_argument(f"--{dim.replace('_', '-')}", type=int, default=None,
                       dest=dim, help=argparse.SUPPRESS if dim == "context" else None)
    g = s.add_argument_group("output")
    g.add_argument("--quant", default=None,
                   help="f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, q6_k, ... (default "
                        "q4_k_m; bf16 with --format hf)")
    g.add_argument("--format", choices=["gguf", "hf"], default="gguf",
                   help="gguf (llama.cpp) or hf: config.json + tokenizer for vLLM's "
                        "--load-format dummy")
    g.add_argument("--out", type=Path, required=True, help="output .gguf file (hf: folder)")
    g.add_argument("--seed", type=int, default=0, help="random seed of the weights")
    g.add_argument("--force", action="store_true", help="overwrite an existing --out")
    sub.add_parser("shapes", help="list the shape presets")




def _shape_from_args(args: argparse.Namespace):
    dims = {d: getattr(args, d) for d in DIMS if getattr(args, d) is not None}
    if args.shape:
        shape = get_preset(args.shape)
        if args.arch:
            dims["arch"] = args.arch
        if not dims:
            return shape
        label = shape.name + "+" + ",".join(f"{k}={v}" for k, v in dims.items())
        return replace(shape, name=label, source=f"{shape.source} (modified: "
                       f"{', '.join(f'{k}={v}' for k, v in dims.items())})",
                       **dims).validate("--shape with custom dimensions")
    missing = [f"--{d.replace('_', '-')}" for d in REQUIRED_DIMS if d not in dims]
    if not args.arch:
        missing.insert(0, "--arch")
    if missing:
        raise UserError("give --shape NAME, --like FILE.gguf, or a custom shape; missing "
                        f"{', '.join(missing)} (harness model shapes lists the presets)")
    return custom_shape(args.arch, dims["hidden"], dims["ffn"], dims["layers"], dims["heads"],
                        dims.get("kv_heads", dims["heads"]), dims["vocab"],
                        dims.get("head_dim", 0), dims.get("context", 4096))


def _synth(args: argparse.Namespace) -> int:

    if args.like is not None:
        extra = [f for f in ("shape", "arch", *DIMS) if getattr(args, f) is not None]
        if extra:
            raise UserError(f"--like copies the shape; drop --{extra[0].replace('_', '-')}")
        if args.quant is not None:
            raise UserError("--like copies each tensor's quantization type from the file; "
                            "drop --quant (quantize the real model first for another type)")
        if args.format == "hf":
            raise UserError("--like makes GGUF twins only; for vLLM use --shape NAME "
                            "--format hf")
    out = args.out
    if out.exists() and not args.force:
        raise UserError(f"--out {out} exists; choose another path or pass --force")
    if args.format == "hf":
        shape = _shape_from_args(args)
        quant = check_quant(args.quant or "bf16")
        if out.exists():
            import shutil

            shutil.rmtree(out) if out.is_dir() else out.unlink()
        write_hf(shape, out, quant)
        print(f"wrote {out}/ (config.json + tokenizer) for shape {shape.name}, "
              f"{fmt(shape.n_params, 'params')} parameters, {quant}\n"
              f"serve with vLLM's random weights: vllm serve {out} --load-format dummy")
        return 0
    if out.suffix != ".gguf":
        raise UserError(f"--out {out}: give a file name ending in .gguf (or --format hf)")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a .gguf file name")
    shape = None if args.like is not None else _shape_from_args(args)
    quant = check_quant(args.quant or DEFAULT_QUANT)
    path = make_synth(out, shape=shape, like=args.like, quant=quant, seed=args.seed)
    what = (f"twin of {args.like}" if args.like is not None else
            f"shape {shape.name}, {quant}, {fmt(shape.n_params, 'params')} parameters")
    print(f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB; {what}; random weights)\n"
          f"measure it: harness bench --model {path}")
    return 0


def _shapes() -> int:

    aliases: dict[str, list[str]] = {}
    for key, shape in load_presets().items():
        if key != shape.name:
            aliases.setdefault(shape.name, []).append(key)
    rows = []
    for name in preset_names():
        s = get_preset(name)
        rows.append([name + (f" ({', '.join(aliases[name])})" if name in aliases else ""),
                     s.arch, f"{s.n_params / 1e9:.2f}", s.layers, s.hidden, s.ffn,
                     f"{s.heads}/{s.kv_heads}", s.vocab, s.source])
    print(render(["shape", "arch", "params B", "layers", "hidden", "ffn", "heads/kv",
                  "vocab", "source (huggingface.co/…)"], rows))
    print("\nuse: harness bench --model synth:SHAPE[-QUANT] (default quant q4_k_m), or "
          "harness model synth --shape SHAPE --quant Q --out FILE.gguf")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.model_command == "synth":
        return _synth(args)
    if args.model_command == "shapes":
        return _shapes()
    raise UserError("harness model: give a subcommand: synth or shapes (harness model -h)")
