"""I/O shared by the PyTorch reference scripts: argv[1] holds the inputs the Rust
test wrote (safetensors), argv[2] receives the outputs, argv[3:] are options."""
import sys

import torch
from safetensors.torch import load_file, save_file

torch.set_num_threads(2)


def io():
    inputs = load_file(sys.argv[1])
    args = sys.argv[3:]

    def save(outputs):
        save_file({k: v.detach().contiguous().cpu() for k, v in outputs.items()}, sys.argv[2])

    return inputs, args, save
