import re, sys
src = open(sys.argv[1]).read()
src = src.replace("#include <cub/cub.cuh>", "").replace("#include <cuda_fp16.h>", "")
SYNC = {"gather_gemm", "suppression_mask", "greedy_scan"}
def launch(m):
    kern, cfg, args = m.group(1), m.group(2), m.group(3)
    parts = [p.strip() for p in re.split(r",(?![^<>()]*[>)])", cfg)]
    while len(parts) < 4: parts.append("0")
    base = kern.split("<")[0]
    threads = "true" if base in SYNC else "false"
    return f"emu::run(dim3({parts[0]}), dim3({parts[1]}), {parts[2]}, {threads}, [=]() {{ {kern}({args}); }});"
src = re.sub(r"([A-Za-z_][\w:]*(?:<[^;<>]*>)?)<<<(.*?)>>>\((.*?)\);", launch, src, flags=re.S)
src = re.sub(r"extern __shared__ (\w[\w ]*?) (\w+)\[\];", r"\1* \2 = reinterpret_cast<\1*>(emu::blk->dyn.data());", src)
open(sys.argv[2], "w").write(src)
