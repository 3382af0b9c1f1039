"""Winograd F(4×4, 3×3) convolution for the CPU, built from large oneDNN/MKL kernels.

A 3×3 stride-1 convolution computed directly costs 9 multiply-adds per output per input channel.
Winograd's minimal filtering (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
2016) computes each 4×4 block of outputs from a 6×6 block of inputs with 36 products instead of
144, a 4× saving, at the price of three linear transforms:

    V = Bᵀ d B   (input tiles)      U = G g Gᵀ   (filters, once)      Y = Aᵀ (U ⊙ V) A   (outputs)

Summed over input channels, the 36 element-wise products become 36 independent matrix products
(tiles × C_in) @ (C_in × C_out). They run as one grouped 1×1 oneDNN convolution — one group per
product, filters reordered once — because on this AMD CPU oneDNN's kernels reach ~48 GMAC/s a core
where MKL's batched product reached ~34 (MKL takes a slower path on non-Intel CPUs; 36 products of
49 × 384 @ 384 × 256 at 2 threads: 1.8 against 2.6–3.0 ms). That made F(4,3) pay on 13×13 maps
too (512→1024: 5.0 against oneDNN's direct 6.9 ms at 2 threads). MKL's `bmm` remains the fallback
where oneDNN is missing. F(2,3) (16 products for 2×2 outputs) was tried again with the oneDNN
product and still never won on yolov3-tiny (second on its 13×13 layers at 1 and 2 threads), so it
is not kept. The transforms are done for all tiles at once as small matrix products on gathered
views, so no Python loop runs per tile or channel, and every intermediate lives in a reusable
`Workspace`.

Accuracy: the transforms have entries up to 8 and fractions of 1/24; in float32 the result
differs from a direct convolution by ~1e-5 relative — tested against `F.conv2d`.
"""
import torch
import torch.nn.functional as F

# Lavin & Gray (2016), F(4,3) with interpolation points 0, ±1, ±2 and ∞.
_BT = [[4, 0, -5, 0, 1, 0],
       [0, -4, -4, 1, 1, 0],
       [0, 4, -4, -1, 1, 0],
       [0, -2, -1, 2, 1, 0],
       [0, 2, -1, -2, 1, 0],
       [0, 4, 0, -5, 0, 1]]
_G = [[1 / 4, 0, 0],
      [-1 / 6, -1 / 6, -1 / 6],
      [-1 / 6, 1 / 6, -1 / 6],
      [1 / 24, 1 / 12, 1 / 6],
      [1 / 24, -1 / 12, 1 / 6],
      [0, 0, 1]]
_AT = [[1, 1, 1, 1, 1, 0],
       [0, 1, -1, 2, -2, 0],
       [0, 1, 1, 4, 4, 0],
       [0, 1, -1, 8, -8, 1]]
TILE, SPAN = 4, 6  # outputs per tile side, inputs per tile side (TILE + 3 - 1)
BT = torch.tensor(_BT, dtype=torch.float32)
AT = torch.tensor(_AT, dtype=torch.float32)
ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def applies(weight, stride, padding, dilation=(1, 1), groups=1):
    """True for the convolutions this module computes: 3×3, stride 1, padding 1, no dilation or groups."""
    return (tuple(weight.shape[2:]) == (3, 3) and list(stride) == [1, 1] and list(padding) == [1, 1]
            and list(dilation) == [1, 1] and groups == 1)


def transform_weights(weight: torch.Tensor) -> torch.Tensor:
    """C_out × C_in × 3 × 3 filters → U = G g Gᵀ as 36 × C_out × C_in (computed in float64, 128 output channels
    at a time: at once, 512→1024 filters took 150 MB of doubles).

    The leading index is q·6 + p (p along the height, q along the width), matching the layout
    `transform_input` gives the tiles. U[ξ] is laid out output channel by output channel: what the
    grouped oneDNN product reads without a copy (`Filters.packed`); MKL's bmm takes its transpose."""
    g = torch.tensor(_G, dtype=torch.float64)
    u = torch.empty(SPAN * SPAN, weight.shape[0], weight.shape[1])
    for start in range(0, weight.shape[0], 128):
        block = g @ weight[start:start + 128].detach().double() @ g.T  # C_out × C_in × 6(p) × 6(q)
        u[:, start:start + 128] = block.permute(3, 2, 0, 1).reshape(SPAN * SPAN, -1, weight.shape[1])
    return u


class Filters:
    """A layer's transformed filters U: as matrices for MKL's bmm, or reordered for the grouped oneDNN product
    (per input shape). Only one form is kept (512→1024 filters take 75 MB)."""

    def __init__(self, weight: torch.Tensor):
        self.weight = weight
        self.c_out = weight.shape[0]
        self.u = None if ONEDNN else transform_weights(weight)
        self._packed = (None, None)

    def packed(self, grouped_input_shape):
        shape, packed = self._packed  # one read: another thread may swap in another shape's reorder meanwhile
        if shape != grouped_input_shape:
            self._packed = (None, None)  # the old reorder goes before the new one is made
            products, c_out, c = SPAN * SPAN, self.c_out, self.weight.shape[1]
            # group ξ: output channel ξ·C_out + o reads input channels ξ·C_in + c with weight U[ξ, o, c]
            as_onednn = transform_weights(self.weight).view(products * c_out, c, 1, 1).to_mkldnn()
            packed = torch._C._nn.mkldnn_reorder_conv2d_weight(as_onednn, [0, 0], [1, 1], [1, 1], products,
                                                               list(grouped_input_shape))
            self._packed = (grouped_input_shape, packed)
        return packed


class Workspace:
    """Buffers for one input shape, reused call after call.

    Each convolution needs ~8 intermediate tensors of 1-5 MB; allocated fresh they cost more than
    the arithmetic (fresh pages are faulted in on first touch: 384→256 at 26×26 took 6.2 ms at 2
    threads with fresh buffers, its steps 2.9 ms with warm ones). The padded input's border is
    written once and stays zero; only the interior changes. Not shareable between threads: keep
    one per thread (`InferenceConv` keys them by thread)."""

    def __init__(self, n, c, h, w, c_out):
        self.th, self.tw = -(-h // TILE), -(-w // TILE)
        hp, wp = TILE * self.th + 2, TILE * self.tw + 2
        tiles = n * self.th * self.tw
        self.padded = torch.zeros(n, hp, wp, c)  # channels last, zero border of 1 and more at the far side
        self.rows = torch.empty(SPAN, n * self.th * wp * c)
        self.v1 = torch.empty(SPAN, n, self.th, wp, c)
        self.cols = torch.empty(SPAN, SPAN * tiles * c)
        self.v = torch.empty(SPAN * SPAN, tiles, c)
        self.by_tile = torch.empty(tiles, SPAN * SPAN, c)  # V with the tile first: the grouped product's input
        self.m = torch.empty(SPAN * SPAN, tiles, c_out)
        self.o1 = torch.empty(TILE, SPAN, tiles * c_out)
        self.o2 = torch.empty(TILE, TILE, tiles * c_out)
        self.out = torch.empty(n, TILE * self.th, TILE * self.tw, c_out)


def transform_input(x: torch.Tensor, ws: Workspace) -> torch.Tensor:
    """N × C × H × W → V: 36 × (N·tiles) × C (in ws.v), for padding 1."""
    n, c, h, w = x.shape
    th, tw, padded = ws.th, ws.tw, ws.padded
    _, hp, wp, _ = padded.shape
    padded[:, 1:h + 1, 1:w + 1] = x.permute(0, 2, 3, 1)
    # along the height: row i of tile t is padded row TILE·t + i → V1[p] = Σ_i Bᵀ[p, i] · rows i
    ws.rows.view(SPAN, n, th, wp, c).copy_(padded.as_strided((SPAN, n, th, wp, c),
                                                             (wp * c, hp * wp * c, TILE * wp * c, c, 1)))
    torch.mm(BT, ws.rows, out=ws.v1.view(SPAN, -1))
    # along the width: column j of tile u is column TILE·u + j → V[q, p] = Σ_j Bᵀ[q, j] · columns j
    ws.cols.view(SPAN, SPAN, n, th, tw, c).copy_(ws.v1.as_strided(
        (SPAN, SPAN, n, th, tw, c), (c, n * th * wp * c, th * wp * c, wp * c, TILE * c, 1)))
    torch.mm(BT, ws.cols, out=ws.v.view(SPAN, -1))
    return ws.v


def multiply(ws: Workspace, filters: Filters) -> torch.Tensor:
    """M[ξ] = V[ξ] @ U[ξ] for every ξ (into ws.m): one grouped 1×1 oneDNN convolution, else MKL's bmm."""
    if not ONEDNN:
        return torch.bmm(ws.v, filters.u.transpose(1, 2), out=ws.m)
    products, tiles, c = ws.v.shape
    ws.by_tile.copy_(ws.v.permute(1, 0, 2))
    # channels-last N×C×H×W view, tiles laid out as the image's rows × columns of tiles (a 1-wide map ran 2× slower)
    grouped = ws.by_tile.view(1, tiles // ws.tw, ws.tw, products * c).permute(0, 3, 1, 2)
    out = torch.ops.mkldnn._convolution_pointwise(grouped, filters.packed(tuple(grouped.shape)), None, [0, 0], [1, 1],
                                                  [1, 1], products, "none", [], "")
    ws.m.copy_(out.permute(0, 2, 3, 1).reshape(tiles, products, -1).permute(1, 0, 2))
    return ws.m


def transform_output(ws: Workspace, n, bias=None) -> torch.Tensor:
    """36 × (N·tiles) × C_out products (ws.m) → Aᵀ M A (+ bias) as N × 4·th × 4·tw × C_out,
    in the workspace (the caller crops it to H × W)."""
    c = ws.m.shape[-1]
    th, tw = ws.th, ws.tw
    torch.mm(AT, ws.m.view(SPAN, -1), out=ws.o1.view(TILE, -1))  # along the width (q → s): s × p × rest
    torch.bmm(AT.expand(TILE, TILE, SPAN), ws.o1, out=ws.o2)  # along the height (p → r): s × r × rest
    tiles = ws.o2.view(TILE, TILE, n, th, tw, c).permute(2, 3, 1, 4, 0, 5)  # n, t, r, u, s, c
    full = ws.out.view(n, th, TILE, tw, TILE, c)
    if bias is None:
        full.copy_(tiles)
    else:
        torch.add(tiles, bias, out=full)
    return ws.out


def conv3x3(x: torch.Tensor, filters: Filters, bias=None, leaky_slope=None, workspace=None) -> torch.Tensor:
    """Convolution of float32 x (N × C_in × H × W) with a layer's `Filters`,
    padding 1, stride 1; optional bias and leaky ReLU. Returns a new N × C_out × H × W tensor in
    channels-last memory. Pass the same `Workspace(N, C_in, H, W, C_out)` to repeated calls to
    skip allocating the intermediates."""
    n, c, h, w = x.shape
    ws = workspace or Workspace(n, c, h, w, filters.c_out)
    transform_input(x, ws)
    multiply(ws, filters)
    cropped = transform_output(ws, n, bias)[:, :h, :w]
    # the last pass writes the new output, only its H × W part (an element-wise op on a cropped view
    # allocates a dense N×H×W×C result)
    out = F.leaky_relu(cropped, leaky_slope) if leaky_slope is not None else cropped.clone()
    return out.permute(0, 3, 1, 2)
