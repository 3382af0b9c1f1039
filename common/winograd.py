"""Winograd F(m×m, 3×3) convolution (m = 2 or 4) for the CPU, built from large matrix products.

A 3×3 stride-1 convolution computed directly costs 9 multiply-adds per output per input channel.
Winograd's minimal filtering (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
2016) computes each m×m block of outputs from an (m+2)×(m+2) block of inputs with (m+2)² products
instead of 9m² — 2.25× fewer for F(2,3), 4× for F(4,3) — at the price of three linear transforms:

    V = Bᵀ d B   (input tiles)      U = G g Gᵀ   (filters, once)      Y = Aᵀ (U ⊙ V) A   (outputs)

Summed over input channels, the (m+2)² elementwise products become (m+2)² independent matrix
products (tiles × C_in) @ (C_in × C_out): one `torch.bmm`, which MKL runs near the CPU's peak on
every core. The transforms are done for all tiles at once as small @ (many columns) products on
gathered views, so no Python loop runs per tile or channel, and every intermediate lives in a
reusable `Workspace`. This is why OpenCV's DNN beat oneDNN's direct convolution on yolov3-tiny at
2 threads (it has its own Winograd F(6,3)); PyTorch ships NNPACK's Winograd, which did not scale
past one thread here. F(4,3) saves more work; F(2,3) wins on small maps (13×13: 49 tiles keep the
matrix products efficient where F(4,3) has only 16 and wastes the overhanging outputs).

Accuracy: F(4,3)'s transforms have entries up to 8 and fractions of 1/24; in float32 the result
differs from a direct convolution by ~1e-5 relative, F(2,3)'s (entries 0, ±1, ±½) by less —
tested against `F.conv2d`.
"""
import torch
import torch.nn.functional as F

# (Bᵀ, G, Aᵀ) per output tile size m. Lavin & Gray (2016): F(2,3) with points 0, ±1, ∞;
# F(4,3) with points 0, ±1, ±2, ∞.
_MATRICES = {
    2: ([[1, 0, -1, 0],
         [0, 1, 1, 0],
         [0, -1, 1, 0],
         [0, 1, 0, -1]],
        [[1, 0, 0],
         [1 / 2, 1 / 2, 1 / 2],
         [1 / 2, -1 / 2, 1 / 2],
         [0, 0, 1]],
        [[1, 1, 1, 0],
         [0, 1, -1, -1]]),
    4: ([[4, 0, -5, 0, 1, 0],
         [0, -4, -4, 1, 1, 0],
         [0, 4, -4, -1, 1, 0],
         [0, -2, -1, 2, 1, 0],
         [0, 2, -1, -2, 1, 0],
         [0, 4, 0, -5, 0, 1]],
        [[1 / 4, 0, 0],
         [-1 / 6, -1 / 6, -1 / 6],
         [-1 / 6, 1 / 6, -1 / 6],
         [1 / 24, 1 / 12, 1 / 6],
         [1 / 24, -1 / 12, 1 / 6],
         [0, 0, 1]],
        [[1, 1, 1, 1, 1, 0],
         [0, 1, -1, 2, -2, 0],
         [0, 1, 1, 4, 4, 0],
         [0, 1, -1, 8, -8, 1]]),
}
TILE_SIZES = tuple(_MATRICES)
_BT = {m: torch.tensor(bt, dtype=torch.float32) for m, (bt, _, _) in _MATRICES.items()}
_AT = {m: torch.tensor(at, dtype=torch.float32) for m, (_, _, at) in _MATRICES.items()}


def applies(weight, stride, padding, dilation=(1, 1), groups=1):
    """True for the convolutions this module computes: 3×3, stride 1, padding 1, no dilation or groups."""
    return (tuple(weight.shape[2:]) == (3, 3) and list(stride) == [1, 1] and list(padding) == [1, 1]
            and list(dilation) == [1, 1] and groups == 1)


def transform_weights(weight: torch.Tensor, tile=4) -> torch.Tensor:
    """C_out × C_in × 3 × 3 filters → the (m+2)² × C_in × C_out matrices U = G g Gᵀ (computed in float64).

    The leading index is q·(m+2) + p (p along the height, q along the width), matching the layout
    `transform_input` gives the tiles."""
    g = torch.tensor(_MATRICES[tile][1], dtype=torch.float64)
    span = tile + 2
    u = g @ weight.detach().double() @ g.T  # C_out × C_in × span(p) × span(q)
    return u.permute(3, 2, 1, 0).reshape(span * span, weight.shape[1], weight.shape[0]).float().contiguous()


class Workspace:
    """Buffers for one input shape and tile size, reused call after call.

    Each convolution needs ~6 intermediate tensors of 1-5 MB; allocated fresh they cost more than
    the arithmetic (fresh pages are faulted in on first touch: 384→256 at 26×26 took 6.2 ms at 2
    threads with fresh buffers, its steps 2.9 ms with warm ones). The padded input's border is
    written once and stays zero; only the interior changes. Not shareable between threads: keep
    one per thread (`InferenceConv` keys them by thread)."""

    def __init__(self, n, c, h, w, c_out, tile=4):
        self.tile, self.span = tile, tile + 2
        self.th, self.tw = -(-h // tile), -(-w // tile)
        hp, wp = tile * self.th + 2, tile * self.tw + 2
        tiles, span = n * self.th * self.tw, self.span
        self.padded = torch.zeros(n, hp, wp, c)  # channels last, zero border of 1 and more at the far side
        self.rows = torch.empty(span, n * self.th * wp * c)
        self.v1 = torch.empty(span, n, self.th, wp, c)
        self.cols = torch.empty(span, span * tiles * c)
        self.v = torch.empty(span * span, tiles, c)
        self.m = torch.empty(span * span, tiles, c_out)
        self.o1 = torch.empty(tile, span, tiles * c_out)
        self.o2 = torch.empty(tile, tile, tiles * c_out)
        self.out = torch.empty(n, tile * self.th, tile * self.tw, c_out)


def transform_input(x: torch.Tensor, ws: Workspace) -> torch.Tensor:
    """N × C × H × W → V: (m+2)² × (N·tiles) × C (in ws.v), for padding 1."""
    n, c, h, w = x.shape
    th, tw, padded, m, span = ws.th, ws.tw, ws.padded, ws.tile, ws.span
    _, hp, wp, _ = padded.shape
    bt = _BT[m]
    padded[:, 1:h + 1, 1:w + 1] = x.permute(0, 2, 3, 1)
    # along the height: row i of tile t is padded row m·t + i → V1[p] = Σ_i Bᵀ[p, i] · rows i
    ws.rows.view(span, n, th, wp, c).copy_(padded.as_strided((span, n, th, wp, c),
                                                             (wp * c, hp * wp * c, m * wp * c, c, 1)))
    torch.mm(bt, ws.rows, out=ws.v1.view(span, -1))
    # along the width: column j of tile u is column m·u + j → V[q, p] = Σ_j Bᵀ[q, j] · columns j
    ws.cols.view(span, span, n, th, tw, c).copy_(ws.v1.as_strided(
        (span, span, n, th, tw, c), (c, n * th * wp * c, th * wp * c, wp * c, m * c, 1)))
    torch.mm(bt, ws.cols, out=ws.v.view(span, -1))
    return ws.v


def transform_output(ws: Workspace, n, bias=None) -> torch.Tensor:
    """(m+2)² × (N·tiles) × C_out products (ws.m) → Aᵀ M A (+ bias) as N × m·tiles high × m·tiles wide × C_out,
    in the workspace (the caller crops it to H × W)."""
    c = ws.m.shape[-1]
    th, tw, m, span = ws.th, ws.tw, ws.tile, ws.span
    at = _AT[m]
    torch.mm(at, ws.m.view(span, -1), out=ws.o1.view(m, -1))  # along the width (q → s): s × p × rest
    torch.bmm(at.expand(m, m, span), ws.o1, out=ws.o2)  # along the height (p → r): s × r × rest
    tiles = ws.o2.view(m, m, n, th, tw, c).permute(2, 3, 1, 4, 0, 5)  # n, t, r, u, s, c
    full = ws.out.view(n, th, m, tw, m, c)
    if bias is None:
        full.copy_(tiles)
    else:
        torch.add(tiles, bias, out=full)
    return ws.out


def conv3x3(x: torch.Tensor, u: torch.Tensor, bias=None, leaky_slope=None, workspace=None) -> torch.Tensor:
    """Convolution of float32 x (N × C_in × H × W) with transformed filters `u` (from
    `transform_weights(w, tile)`), padding 1, stride 1; optional bias and leaky ReLU. Returns a new
    N × C_out × H × W tensor in channels-last memory. Pass the same `Workspace(N, C_in, H, W, C_out,
    tile)` to repeated calls to skip allocating the intermediates."""
    n, c, h, w = x.shape
    tile = int(round(u.shape[0] ** 0.5)) - 2
    ws = workspace or Workspace(n, c, h, w, u.shape[-1], tile)
    torch.bmm(transform_input(x, ws), u, out=ws.m)
    cropped = transform_output(ws, n, bias)[:, :h, :w]
    # the last pass writes the new output, only its H × W part (an element-wise op on a cropped view
    # allocates a dense N×H×W×C result)
    out = F.leaky_relu(cropped, leaky_slope) if leaky_slope is not None else cropped.clone()
    return out.permute(0, 3, 1, 2)
