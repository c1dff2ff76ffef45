#!/usr/bin/env python3
"""Turns the latest checkpoint of a decoders run into the weights nst ships.

    .venv/bin/python scripts/ship_decoders.py [RUN_DIR] [OUT_DIR]
    # defaults: checkpoints/decoders_campaign -> checkpoints/decoders

The output is a checkpoint folder that `nst-infer optex` and `adain-wct` use
when no --checkpoint is given: `latest`, the sidecar `step_N.json` (step,
seed, resolved config, losses) and `step_N.safetensors` with every tensor in
bf16 (half the size of f32; nst reads it back as f32) and nst's CRC-32 of the
tensors (`nst_crc32`: over name, shape as u64 LE, data bytes, in name order),
which nst verifies on load. The optimizer state is not shipped (a shipped
checkpoint is for inference; resume from the campaign's own run folder).
The folder must stay under 60 MB.
"""
import json
import os
import struct
import sys
import zlib

import torch
from safetensors.torch import load_file, save_file

LIMIT = 60 * 1000 * 1000


def crc(tensors):
    c = 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        c = zlib.crc32(name.encode(), c)
        for d in t.shape:
            c = zlib.crc32(struct.pack("<Q", d), c)
        c = zlib.crc32(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"", c)
    return f"{c:08x}"


def main():
    run = sys.argv[1] if len(sys.argv) > 1 else "checkpoints/decoders_campaign"
    out = sys.argv[2] if len(sys.argv) > 2 else "checkpoints/decoders"
    stem = open(os.path.join(run, "latest")).read().strip()
    side = json.load(open(os.path.join(run, stem + ".json")))
    if side.get("model_kind") != "decoders":
        sys.exit(f"ship_decoders: {run} is a {side.get('model_kind')!r} run, not 'decoders'")
    from safetensors import safe_open
    with safe_open(os.path.join(run, side["weights_file"]), "pt") as f:
        meta = dict(f.metadata() or {})
    w = load_file(os.path.join(run, side["weights_file"]))
    w = {k: v.to(torch.bfloat16).contiguous() for k, v in w.items()}
    meta["nst_crc32"] = crc(w)
    meta["dtype"] = "bf16"
    os.makedirs(out + ".part", exist_ok=True)
    save_file(w, os.path.join(out + ".part", side["weights_file"]), metadata=meta)
    side["optimizer_file"] = ""
    side["shipped_from"] = f"{run}/{stem}"
    with open(os.path.join(out + ".part", stem + ".json"), "w") as f:
        json.dump(side, f, indent=1)
    with open(os.path.join(out + ".part", "latest"), "w") as f:
        f.write(stem)
    size = sum(os.path.getsize(os.path.join(out + ".part", x)) for x in os.listdir(out + ".part"))
    if size > LIMIT:
        sys.exit(f"ship_decoders: {size / 1e6:.1f} MB is over the 60 MB budget")
    import shutil
    shutil.rmtree(out, ignore_errors=True)
    os.replace(out + ".part", out)
    print(f"ship_decoders: {out}/{stem} ({size / 1e6:.1f} MB, bf16, crc32 {meta['nst_crc32']})")


if __name__ == "__main__":
    main()
