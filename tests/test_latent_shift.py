import math

import pytest
import torch
import torch.nn.functional as F

from adapters.latent_shift import (SIMDA_SHIFT_TABLE, kv_source_frames, latent_shift_attention,
                                   latent_shift_kv, shift_grid)

# The table exactly as the SimDA notes give it (rows: h mod 4, columns: w mod 4).
EXPECTED_TABLE = [
    [4, 3, 2, 1],
    [3, 2, 1, 0],
    [2, 1, 0, 0],
    [1, 2, 3, 4],
]


def reference_kv(tokens, frames, height, width, mode):
    """Slow reference: explicit loops over videos, frames and positions."""
    bf, n, c = tokens.shape
    videos = bf // frames
    out = torch.empty(bf, 2 * n, c, dtype=tokens.dtype)

    def shifted(video, u, pos):
        h, w = divmod(pos, width)
        src = u - EXPECTED_TABLE[h % 4][w % 4]
        if src < 0:
            src = u
        return tokens[video * frames + src, pos]

    for b in range(videos):
        for t in range(frames):
            prev = max(t - 1, 0)
            row = b * frames + t
            for pos in range(n):
                if mode == "simda":
                    out[row, pos] = shifted(b, prev, pos)
                    out[row, n + pos] = shifted(b, t, pos)
                else:
                    out[row, pos] = tokens[b * frames + t, pos]
                    out[row, n + pos] = tokens[b * frames + prev, pos]
    return out


def test_table_matches_notes():
    assert [list(r) for r in SIMDA_SHIFT_TABLE] == EXPECTED_TABLE
    grid = shift_grid(6, 9)
    assert grid.shape == (6, 9)
    for h in range(6):
        for w in range(9):
            assert grid[h, w].item() == EXPECTED_TABLE[h % 4][w % 4]


@pytest.mark.parametrize("mode", ["simda", "previous_frame"])
@pytest.mark.parametrize("videos,frames,height,width", [
    (3, 6, 5, 7),   # several videos, frames > 4, odd grid
    (2, 1, 5, 7),   # single frame
    (1, 9, 4, 4),   # frames > every shift
    (4, 3, 3, 2),   # fewer frames than the largest shift
])
def test_matches_loop_reference(mode, videos, frames, height, width):
    g = torch.Generator().manual_seed(videos * 100 + frames)
    tokens = torch.randn(videos * frames, height * width, 5, generator=g)
    got = latent_shift_kv(tokens, frames, height, width, mode)
    assert got.shape == (videos * frames, 2 * height * width, 5)
    assert torch.equal(got, reference_kv(tokens, frames, height, width, mode))


def frame_coded_tokens(videos, frames, n):
    """Tokens whose channel 0 is the frame index, channel 1 the video, channel 2 the position."""
    tok = torch.zeros(videos * frames, n, 3)
    for b in range(videos):
        for t in range(frames):
            tok[b * frames + t, :, 0] = t
            tok[b * frames + t, :, 1] = b
            tok[b * frames + t, :, 2] = torch.arange(n, dtype=torch.float32)
    return tok


def test_simda_table_entry_by_entry():
    videos, frames, height, width = 2, 8, 8, 8
    n = height * width
    kv = latent_shift_kv(frame_coded_tokens(videos, frames, n), frames, height, width, "simda")
    for b in range(videos):
        for t in range(frames):
            row = kv[b * frames + t]
            # never leaks across videos, positions never move
            assert torch.all(row[:, 1] == b)
            assert torch.equal(row[:n, 2], torch.arange(n, dtype=torch.float32))
            assert torch.equal(row[n:, 2], torch.arange(n, dtype=torch.float32))
            for h in range(height):
                for w in range(width):
                    s = EXPECTED_TABLE[h % 4][w % 4]
                    pos = h * width + w
                    cur = t - s if t - s >= 0 else t
                    p = max(t - 1, 0)
                    prev = p - s if p - s >= 0 else p
                    assert row[n + pos, 0].item() == cur
                    assert row[pos, 0].item() == prev


def test_source_frames_frame0_and_late_frames():
    src = kv_source_frames(6, 4, 4, "simda")
    n = 16
    assert torch.all(src[0] == 0)                       # frame 0: both halves are frame 0
    table = torch.tensor(EXPECTED_TABLE).reshape(-1)
    assert torch.equal(src[5, n:], 5 - table)           # all shifts valid from frame 4 on
    assert torch.equal(src[5, :n], 4 - table)
    prev = kv_source_frames(6, 4, 4, "previous_frame")
    assert torch.all(prev[3, :n] == 3) and torch.all(prev[3, n:] == 2)
    assert torch.all(prev[0] == 0)


def test_bad_batch_raises_with_numbers():
    tokens = torch.zeros(10, 6, 2)
    with pytest.raises(ValueError, match=r"10.*4"):
        latent_shift_kv(tokens, 4, 2, 3, "simda")
    with pytest.raises(ValueError, match="grid"):
        latent_shift_kv(tokens, 5, 2, 2, "simda")
    with pytest.raises(ValueError, match="mode"):
        latent_shift_kv(tokens, 5, 2, 3, "later_frame")


def test_duplicated_keys_equal_plain_attention():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(3, 2, 11, 8, generator=g, dtype=torch.float64)
    a_k = torch.randn(3, 2, 13, 8, generator=g, dtype=torch.float64)
    a_v = torch.randn(3, 2, 13, 8, generator=g, dtype=torch.float64)
    plain = F.scaled_dot_product_attention(q, a_k, a_v)
    dup = F.scaled_dot_product_attention(q, torch.cat([a_k, a_k], 2), torch.cat([a_v, a_v], 2))
    torch.testing.assert_close(dup, plain, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["simda", "previous_frame"])
def test_frame0_is_plain_self_attention(mode):
    videos, frames, height, width, heads, c = 2, 5, 5, 7, 2, 8
    n = height * width
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(videos * frames, n, c, generator=g, dtype=torch.float64) for _ in range(3))
    out = latent_shift_attention(q, k, v, frames, height, width, mode, heads)
    assert out.shape == (videos * frames, n, c)

    def plain(i):
        qh, kh, vh = (x[i].reshape(n, heads, c // heads).transpose(0, 1) for x in (q, k, v))
        w = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(c // heads), dim=-1)
        return (w @ vh).transpose(0, 1).reshape(n, c)

    for b in range(videos):
        torch.testing.assert_close(out[b * frames], plain(b * frames), rtol=1e-10, atol=1e-10)
    # later frames do see other frames
    assert not torch.allclose(out[1], plain(1))


def test_gradients_flow_and_dtype_kept():
    tokens = torch.randn(8, 12, 4, dtype=torch.float16).float().requires_grad_()
    kv = latent_shift_kv(tokens, 4, 3, 4, "simda")
    kv.sum().backward()
    # every key/value slot takes exactly one source token, so the gradient counts uses
    assert tokens.grad.sum().item() == kv.numel()
    half = latent_shift_kv(torch.zeros(4, 12, 4, dtype=torch.float16), 4, 3, 4)
    assert half.dtype == torch.float16
