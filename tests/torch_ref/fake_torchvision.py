"""Writes a torchvision-layout VGG state_dict (features.N.*, classifier.*) with
random weights to argv[2] via torch.save, as torchvision's checkpoints are.
argv[1] is unused (the common input file); argv[3] is the architecture."""
import sys

import torch

arch = sys.argv[3]
cfg = {"vgg16": [2, 2, 3, 3, 3], "vgg19": [2, 2, 4, 4, 4]}[arch]
torch.manual_seed(0)
sd, i, cin = {}, 0, 3
for b, n in enumerate(cfg):
    cout = [64, 128, 256, 512, 512][b]
    for _ in range(n):
        sd[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3) * (2.0 / (9 * cin)) ** 0.5
        sd[f"features.{i}.bias"] = torch.randn(cout) * 0.1
        i += 2  # conv, relu
        cin = cout
    i += 1  # pool
sd["classifier.0.weight"] = torch.randn(8, 4)
sd["classifier.0.bias"] = torch.randn(8)
torch.save(sd, sys.argv[2])
