#!/usr/bin/env python3
"""Convert pretrained VGG weights to the safetensors layout nst's loss network reads.

Tensor names say which layer each tensor is: ``conv1_1.weight`` ([out, in, 3, 3],
PyTorch's cross-correlation layout) and ``conv1_1.bias`` ([out]). The file's
metadata records the architecture, the source and the input preprocessing; the
Rust loader takes the preprocessing from there and never guesses it.

  convert_vgg.py keras H5 OUT            Keras ImageNet VGG19/16 "notop" .h5 (Caffe-style input)
  convert_vgg.py torchvision PTH OUT     torchvision vgg19/vgg16 state_dict (.pth)
  convert_vgg.py check OUT [--source-md5 M]   exit 0 if OUT is a complete conversion
"""
import argparse
import hashlib
import json
import os
import sys

VGG_BLOCKS = {"vgg16": [2, 2, 3, 3, 3], "vgg19": [2, 2, 4, 4, 4]}
CAFFE_MEAN_BGR = [103.939, 116.779, 123.68]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def layer_names(arch):
    return [f"conv{b + 1}_{k + 1}" for b, n in enumerate(VGG_BLOCKS[arch]) for k in range(n)]


def md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_atomic(tensors, metadata, out):
    from safetensors.numpy import save_file

    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".part"
    save_file(tensors, tmp, metadata={k: str(v) for k, v in metadata.items()})
    os.replace(tmp, out)
    print(f"wrote {out}: {len(tensors)} tensors, metadata {json.dumps(metadata)}")


def convert_keras(h5_path, out):
    import h5py
    import numpy as np

    tensors = {}
    with h5py.File(h5_path, "r") as f:
        groups = [k for k in f.keys() if k.startswith("block") and "_conv" in k]
        n_conv = len(groups)
        arch = {13: "vgg16", 16: "vgg19"}.get(n_conv)
        if arch is None:
            sys.exit(f"error: {h5_path} has {n_conv} conv groups; expected 13 (VGG16) or 16 (VGG19)")
        for name in layer_names(arch):
            b, k = name[4:].split("_")
            g = f[f"block{b}_conv{k}"]
            kernel = next(g[d][()] for d in g.keys() if d.endswith("_W_1:0") or d.startswith("kernel"))
            bias = next(g[d][()] for d in g.keys() if d.endswith("_b_1:0") or d.startswith("bias"))
            # Keras: H x W x in x out; both frameworks use cross-correlation, so a transpose suffices.
            tensors[f"{name}.weight"] = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)).astype(np.float32)
            tensors[f"{name}.bias"] = np.ascontiguousarray(bias).astype(np.float32)
    meta = {
        "format": "nst-vgg",
        "arch": arch,
        "source": "keras-imagenet:" + os.path.basename(h5_path),
        "source_md5": md5(h5_path),
        "preprocessing": "caffe",
        "channel_order": "BGR",
        "input_scale": 255.0,
        "mean": json.dumps(CAFFE_MEAN_BGR),
        "std": json.dumps([1.0, 1.0, 1.0]),
    }
    save_atomic(tensors, meta, out)


def convert_torchvision(pth_path, out):
    import torch

    sd = torch.load(pth_path, map_location="cpu", weights_only=True)
    conv_idx = sorted({int(k.split(".")[1]) for k in sd if k.startswith("features.") and k.endswith(".weight")})
    arch = {13: "vgg16", 16: "vgg19"}.get(len(conv_idx))
    if arch is None:
        sys.exit(f"error: {pth_path} has {len(conv_idx)} conv layers; expected 13 (VGG16) or 16 (VGG19)")
    tensors = {}
    for name, i in zip(layer_names(arch), conv_idx):
        tensors[f"{name}.weight"] = sd[f"features.{i}.weight"].float().contiguous().numpy()
        tensors[f"{name}.bias"] = sd[f"features.{i}.bias"].float().contiguous().numpy()
    meta = {
        "format": "nst-vgg",
        "arch": arch,
        "source": "torchvision:" + os.path.basename(pth_path),
        "source_md5": md5(pth_path),
        "preprocessing": "torchvision",
        "channel_order": "RGB",
        "input_scale": 1.0,
        "mean": json.dumps(IMAGENET_MEAN),
        "std": json.dumps(IMAGENET_STD),
    }
    save_atomic(tensors, meta, out)


def check(out, source_md5):
    from safetensors import safe_open

    if not os.path.exists(out):
        return 1
    try:
        with safe_open(out, "np") as f:
            meta = f.metadata() or {}
            keys = set(f.keys())
    except Exception:
        return 1
    arch = meta.get("arch")
    if meta.get("format") != "nst-vgg" or arch not in VGG_BLOCKS:
        return 1
    want = {f"{n}.{p}" for n in layer_names(arch) for p in ("weight", "bias")}
    if keys != want:
        return 1
    if source_md5 and meta.get("source_md5") != source_md5:
        return 1
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("keras")
    k.add_argument("h5")
    k.add_argument("out")
    t = sub.add_parser("torchvision")
    t.add_argument("pth")
    t.add_argument("out")
    c = sub.add_parser("check")
    c.add_argument("out")
    c.add_argument("--source-md5")
    a = ap.parse_args()
    if a.cmd == "keras":
        convert_keras(a.h5, a.out)
    elif a.cmd == "torchvision":
        convert_torchvision(a.pth, a.out)
    else:
        sys.exit(check(a.out, a.source_md5))


if __name__ == "__main__":
    main()
