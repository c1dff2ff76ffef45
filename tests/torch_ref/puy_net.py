"""The Puy–Pérez learned update g(X) (arXiv 1806.05285), written from the
paper, for puy_ref.py and bench/torch_ref.py. Weights: W[prefix +
"level{l}.{fwd0,fwd1,bwd0,bwd1}.{weight,bias}"] and W[prefix + "step_size"].

    F_l = h^f_l(X) (two conv3x3+ReLU per level, 2x2 average pooling between
          levels, input 2X - 1),
    H_l = (1/n') h^f_l(S)^T h^f_l(S),
    D_l = F_l [(1/n) F_l^T F_l - H_l], divided per sample (norm) by its RMS
          ("rms") or by rms(F_l) (ms(F_l) + ms(S_l)), ms = mean square of the
          activations ("gram"),
    backward: from the deepest level, add D_l, multiply by the ReLU mask of
    fwd1, conv bwd1, multiply by the mask of fwd0, conv bwd0, nearest x2
    upsampling (zero-padded to the shallower size), down to the image;
    g = step_size * (that map)."""
import torch
import torch.nn.functional as F


def gram(f):
    """(1/n) FᵀF per sample, n = H·W."""
    b, c, h, w = f.shape
    m = f.reshape(b, c, h * w)
    return m @ m.transpose(1, 2) / (h * w)


class UpdateNet:
    def __init__(self, W, prefix=""):
        self.W, self.p = W, prefix
        names = (k[len(prefix):] for k in W if k.startswith(prefix + "level"))
        self.levels = sorted({int(k.split(".")[0][5:]) for k in names})

    def conv(self, h, name):
        return F.conv2d(h, self.W[self.p + name + ".weight"], self.W.get(self.p + name + ".bias"), padding=1)

    def forward(self, img):
        """The maps F_l, their ReLU masks and the sizes of each level's input."""
        h = img * 2 - 1
        maps, masks, sizes = [], [], []
        for l in self.levels:
            if l > 1:
                h = F.avg_pool2d(h, 2)
            sizes.append(h.shape[2:])
            a0 = self.conv(h, f"level{l}.fwd0")
            a1 = self.conv(torch.relu(a0), f"level{l}.fwd1")
            h = torch.relu(a1)
            maps.append(h)
            masks.append(((a0 > 0).to(h.dtype), (a1 > 0).to(h.dtype)))
        return maps, masks, sizes

    def update(self, x, smaps, norm="rms"):
        """g(X) for the style's maps `smaps` (from `forward`)."""
        fmaps, masks, sizes = self.forward(x)
        run = None
        for i in reversed(range(len(self.levels))):
            f, l = fmaps[i], self.levels[i]
            b, c, h, w = f.shape
            # F [(1/n)FᵀF - H] with F [n, c] as in the paper, computed as its
            # transpose [c, n]: (G - H) Fᵀ (G and H are symmetric).
            d = ((gram(f) - gram(smaps[i])) @ f.reshape(b, c, h * w)).reshape(b, c, h, w)
            if norm == "rms":
                d = d / ((d.reshape(b, -1).pow(2).mean(1) + 1e-12).sqrt().view(b, 1, 1, 1) + 1e-8)
            else:
                msf = f.pow(2).mean(dim=(1, 2, 3))
                mss = smaps[i].pow(2).mean(dim=(1, 2, 3))
                d = d / (msf.sqrt() * (msf + mss) + 1e-8).view(b, 1, 1, 1)
            m = d if run is None else run + d
            m = self.conv(m * masks[i][1], f"level{l}.bwd1")
            m = self.conv(m * masks[i][0], f"level{l}.bwd0")
            if i > 0:
                up = F.interpolate(m, scale_factor=2, mode="nearest")
                ph, pw = sizes[i - 1]
                m = F.pad(up, (0, pw - up.shape[3], 0, ph - up.shape[2]))
            run = m
        return run * self.W[self.p + "step_size"]
