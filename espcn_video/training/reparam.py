"""Structural re-parameterisation for training (`train --expand E`): more weights while training,
the same network afterwards.

Each convolution of the network (k x k, C_in -> C_out) trains as the sum of three linear branches
(as ECBSR, Zhang et al. 2021, and ExpandNets, Guo et al. 2020, do for small real-time networks):

- the k x k convolution itself (with the bias), which starts as the layer's weights;
- a 1 x 1 convolution C_in -> E·C_out (no bias) followed by a k x k one E·C_out -> C_out: a wider
  factorisation of the same kernel, whose second factor starts at zero;
- a 1 x 1 convolution C_in -> C_out, which starts at zero.

No branch has a nonlinearity or a bias before a padded convolution, so their sum is exactly one
k x k convolution (`folded`): every step runs that one convolution with the folded kernel (the
factorised form changes only the gradients, the over-parameterisation's point), and the preset
written at the end is the plain network, same shapes, same speed, same int8 twin. At step 0 the
folded kernel is the --init preset's, so a warm restart starts from the preset's output.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


class RepConv2d(nn.Module):
    """A Conv2d (stride 1, 'same' zero padding, odd square kernel) trained as three linear branches."""

    def __init__(self, conv: nn.Conv2d, expand: int) -> None:
        super().__init__()
        k = conv.kernel_size[0]
        if (
            conv.kernel_size != (k, k)
            or k % 2 == 0
            or conv.padding != (k // 2, k // 2)
            or conv.stride != (1, 1)
            or conv.dilation != (1, 1)
            or conv.groups != 1
            or conv.bias is None
        ):
            raise ValueError(f"RepConv2d takes a stride-1 'same' convolution with a bias, not {conv}")
        if expand < 1:
            raise ValueError(f"expand must be at least 1, got {expand}")
        c_out, c_in = conv.out_channels, conv.in_channels
        self.kernel = k
        self.main = nn.Parameter(conv.weight.detach().clone())
        self.bias = nn.Parameter(conv.bias.detach().clone())
        # Small: Adam moves each weight of `up` by about the learning rate whatever its gradient,
        # and the factorised kernel changes by that times the sum of |down| over the E·C_out
        # rows; with |down| <= 1/(E·C_out) it moves by at most the learning rate, as `main` does.
        width = expand * c_out
        self.down = nn.Parameter(torch.empty(width, c_in, 1, 1).uniform_(-1.0 / width, 1.0 / width))
        self.up = nn.Parameter(torch.zeros(c_out, expand * c_out, k, k))
        self.point = nn.Parameter(torch.zeros(c_out, c_in, 1, 1))

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) of the one k x k convolution the three branches sum to."""
        # up (O, M, k, k) after down (M, I, 1, 1): W[o, i] = sum_m up[o, m] · down[m, i]
        factored = torch.einsum("omyx,mi->oiyx", self.up, self.down[:, :, 0, 0])
        pad = self.kernel // 2
        point = F.pad(self.point, (pad, pad, pad, pad))
        return self.main + factored + point, self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.folded()
        return F.conv2d(x, weight, bias, padding=self.kernel // 2)


def expanded(model: nn.Module, expand: int) -> nn.Module:
    """`model` with every Conv2d trained as a RepConv2d (in place; returned for chaining). The
    model computes the same function as before."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Conv2d):
            setattr(model, name, RepConv2d(child, expand))
        else:
            expanded(child, expand)
    return model


def plain_network(model: nn.Module) -> nn.Module:
    """`model` itself, or its collapsed copy when it trains any RepConv2d."""
    return collapsed(model) if any(isinstance(m, RepConv2d) for m in model.modules()) else model


def collapsed(model: nn.Module) -> nn.Module:
    """A copy of `model` with every RepConv2d folded back into a plain Conv2d: the network the
    preset file holds (same state_dict keys as a network never expanded)."""
    plain = copy.deepcopy(model)
    _collapse(plain)
    return plain


def _collapse(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, RepConv2d):
            weight, bias = child.folded()
            out_c, in_c, k, _ = weight.shape
            conv = nn.Conv2d(in_c, out_c, kernel_size=k, padding=k // 2).to(weight.device, weight.dtype)
            conv.weight = nn.Parameter(weight.detach().clone())
            conv.bias = nn.Parameter(bias.detach().clone())
            setattr(module, name, conv)
        else:
            _collapse(child)
