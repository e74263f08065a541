"""Render the GPU check's JSON files (``benchmarks/gpu_check.sh``) as one markdown page.

    python benchmarks/gpu_report.py [--dir benchmarks/results/gpu]

Reads ``environment.json``, ``cuda_kernel_tests.json``, ``sparse_conv_gpu.json`` and ``student_gpu.json``
from the directory (each optional: a missing file is reported as not run) and writes ``README.md``
there atomically. No GPU needed; ``gpu_check.sh`` calls it after the timings.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from clean_deploy.atomic import atomic_write  # noqa: E402

FILES = ("environment", "cuda_kernel_tests", "sparse_conv_gpu", "student_gpu")


def _load(d: Path, name: str) -> dict | None:
    p = d / f"{name}.json"
    if not p.exists():
        return None
    try:
        out = json.loads(p.read_text())
    except json.JSONDecodeError as err:
        raise SystemExit(f"gpu_report: {p}: not valid JSON ({err.msg}, line {err.lineno})")
    if not isinstance(out, dict):
        raise SystemExit(f"gpu_report: {p}: expected a JSON object, got {type(out).__name__}")
    return out


def _ms(x) -> str:
    return "not run" if x is None else f"{x:.3f}"


def _err(x) -> str:
    return "not run" if x is None else f"{x:.2e}"


def render(d: Path) -> str:
    data = {n: _load(d, n) for n in FILES}
    env, tests, conv, student = (data[n] for n in FILES)
    dates = sorted({v["date"] for v in data.values() if v and "date" in v})
    lines = ["# GPU check", "",
             f"Written by `benchmarks/gpu_report.py` from `{d.name}/*.json` (`bash benchmarks/gpu_check.sh`); "
             f"run date(s): {', '.join(dates) or 'none'}.", ""]
    if env:
        lines += ["## Machine", "", "| | |", "|---|---|"]
        lines += [f"| {k} | {'not recorded' if v is None else v} |" for k, v in env.items() if k != "date"]
        lines.append("")
    lines += ["## CUDA kernels vs the CPU kernels (`test_cuda_kernels`)", ""]
    if tests:
        lines += [f"{tests.get('gpu')}: **{tests.get('checks')} checks, {tests.get('failed')} failed** "
                  "(sparse conv rulebooks exact and features compared with the CPU kernel; redundancy "
                  "elimination's kept boxes compared with the CPU kernel; full log in "
                  "`cuda_kernel_tests.txt`).", ""]
    else:
        lines += ["not run", ""]
    lines += ["## Sparse convolution: SECOND's layer stack (`sparse_conv_gpu.py`)", ""]
    if conv:
        grid = conv.get("grid")
        lines += [f"{conv.get('device')}, grid {grid}, frames with {conv.get('frames_voxels')} voxels, "
                  f"median of {conv.get('reps')} runs per layer, mean over the frames; milliseconds.", "",
                  "| layer | cin>cout | n_in | n_out | ours fp32 | ours fp16 | rulebook alone | spconv | CPU, 1 thread |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in conv.get("per_layer_ms", []):
            lines.append(f"| {r['layer']} | {r['cin']}>{r['cout']} | {r['n_in']} | {r['n_out']} | "
                         f"{_ms(r.get('ours_fp32'))} | {_ms(r.get('ours_fp16'))} | {_ms(r.get('ours_rulebook'))} | "
                         f"{_ms(r.get('spconv'))} | {_ms(r.get('cpu_1t'))} |")
        s = conv.get("per_layer_sum_ms", {})
        lines.append(f"| **sum** | | | | {_ms(s.get('ours_fp32'))} | {_ms(s.get('ours_fp16'))} | "
                     f"{_ms(s.get('ours_rulebook'))} | {_ms(s.get('spconv'))} | {_ms(s.get('cpu_1t'))} |")
        st, e = conv.get("stack_ms", {}), conv.get("max_abs_err", {})
        lines += ["", f"Chained stack (with the per-layer output-count sync): fp32 {_ms(st.get('ours_fp32'))} ms, "
                  f"fp16 {_ms(st.get('ours_fp16'))} ms. Max |ours - CPU kernel| {_err(e.get('vs_cpu'))}; "
                  f"max |ours - spconv| {_err(e.get('vs_spconv'))}; fp16 vs fp32 relative {_err(e.get('fp16_vs_fp32_rel'))}.",
                  "", f"Columns: {conv.get('notes', '')}", ""]
    else:
        lines += ["not run", ""]
    lines += ["## Exported student on real frames (`gpu_student.py run`)", ""]
    if student:
        st, re_, e = student.get("sparse_stack_ms", {}), student.get("redundancy_ms", {}), student.get("max_abs_diff_vs_cpu", {})
        lines += [f"{student.get('device')}, {student.get('frames')} test frames of the deployed student "
                  f"(`{Path(str(student.get('source'))).name}`), {student.get('reps')} runs per frame.", "",
                  "| step | median over frames (ms) | per frame (ms) |", "|---|---:|---|",
                  f"| {len(student.get('sparse_layers_ms', []))} sparse conv layers, chained | {_ms(st.get('median'))} | "
                  f"{', '.join(_ms(x) for x in st.get('per_frame', []))} |",
                  f"| IoU-aware redundancy elimination | {_ms(re_.get('median'))} | "
                  f"{', '.join(_ms(x) for x in re_.get('per_frame', []))} |", "",
                  f"Max |GPU - CPU|: sparse fp32 {_err(e.get('sparse_fp32'))}, sparse fp16 {_err(e.get('sparse_fp16'))}, "
                  f"kept boxes {_err(e.get('re_boxes'))}.", ""]
    else:
        lines += ["not run", ""]
    lines += ["TensorRT was not installed on the machine: no engine was built or run here.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=ROOT / "benchmarks" / "results" / "gpu")
    args = ap.parse_args(argv)
    if not args.dir.is_dir():
        print(f"gpu_report: {args.dir}: no such directory (expected the output of benchmarks/gpu_check.sh)",
              file=sys.stderr)
        return 2
    text = render(args.dir)
    atomic_write(args.dir / "README.md", lambda f: f.write(text.encode()))
    print(f"gpu_report: wrote {args.dir / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
