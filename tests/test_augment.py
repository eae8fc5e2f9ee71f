"""Random crops (zero padding) and horizontal flips, checked against a per-image oracle."""
from __future__ import annotations

import numpy as np
import pytest

from pycnn.augment import RandomCropFlip, crop_flip, random_crop_flip


def crop_flip_loop(x, offsets, flips, pad):
    """Obvious per-image version: np.pad, slice the window, mirror the columns."""
    n, h, w, _ = x.shape
    out = np.empty_like(x)
    for i in range(n):
        padded = np.pad(x[i], ((pad, pad), (pad, pad), (0, 0)))
        dy, dx = offsets[i]
        window = padded[dy:dy + h, dx:dx + w]
        out[i] = window[:, ::-1] if flips[i] else window
    return out


def _distinct_images(rng, shape, dtype=np.float32):
    """Images whose pixels are all distinct and non-zero, so any crop or flip is visible."""
    n = int(np.prod(shape))
    return (rng.permutation(n) + 1).reshape(shape).astype(dtype)


@pytest.mark.parametrize("shape, pad", [((5, 32, 32, 3), 4), ((3, 7, 9, 1), 2), ((1, 4, 6, 2), 3),
                                        ((2, 5, 5, 3), 0)])
def test_crop_flip_matches_per_image_loop(rng, shape, pad):
    x = _distinct_images(rng, shape)
    n = shape[0]
    offsets = rng.integers(0, 2 * pad + 1, (n, 2))
    offsets[0] = (0, 2 * pad)  # extreme corners are always covered
    flips = np.arange(n) % 2 == 0
    np.testing.assert_array_equal(crop_flip(x, offsets, flips, pad), crop_flip_loop(x, offsets, flips, pad))


def _identify(x_img, out_img, pad):
    """All (dy, dx, flip) whose per-image result equals out_img."""
    h, w = x_img.shape[:2]
    hits = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            for flip in (False, True):
                cand = crop_flip_loop(x_img[None], np.array([[dy, dx]]), np.array([flip]), pad)[0]
                if np.array_equal(cand, out_img):
                    hits.append((dy, dx, flip))
    return hits


def test_random_crop_flip_outputs_are_real_crops_and_flips(rng):
    pad, n = 2, 300
    x = _distinct_images(rng, (n, 6, 5, 2))
    out = random_crop_flip(x, np.random.default_rng(7), pad=pad)
    params = []
    for i in range(n):
        hits = _identify(x[i], out[i], pad)
        assert len(hits) == 1, f"image {i} is not exactly one crop/flip of its input: {hits}"
        params.append(hits[0])
    dys, dxs, flips = zip(*params)
    assert set(dys) == set(range(2 * pad + 1)) and set(dxs) == set(range(2 * pad + 1))
    assert 0.4 < np.mean(flips) < 0.6
    assert np.mean([p == (pad, pad, False) for p in params]) < 0.1  # not mostly untouched


def test_random_crop_flip_shape_dtype_and_input_untouched(rng):
    for dtype in (np.uint8, np.float32):
        x = (rng.random((8, 32, 32, 3)) * 255).astype(dtype)
        before = x.copy()
        out = random_crop_flip(x, rng)
        assert out.shape == x.shape and out.dtype == dtype
        np.testing.assert_array_equal(x, before)
        assert not np.array_equal(out, x)


def test_random_crop_flip_is_seeded_and_varies():
    x = _distinct_images(np.random.default_rng(0), (16, 8, 8, 3))
    a = random_crop_flip(x, np.random.default_rng(3))
    b = random_crop_flip(x, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(random_crop_flip(x, 3), a)  # int seed == default_rng(seed)
    aug = RandomCropFlip(pad=4, seed=1)
    assert not np.array_equal(aug(x), aug(x))
    assert aug.get_config() == {"pad": 4, "flip": True}


def test_no_flip_and_zero_pad_is_identity(rng):
    x = _distinct_images(rng, (4, 6, 6, 1))
    np.testing.assert_array_equal(random_crop_flip(x, rng, pad=0, flip=False), x)
    out = random_crop_flip(x, rng, pad=0, flip=True)  # only mirrored or unchanged
    for i in range(4):
        assert np.array_equal(out[i], x[i]) or np.array_equal(out[i], x[i, :, ::-1])


def test_large_batch_crosses_chunks(rng):
    n, pad = 4096 + 37, 1
    x = rng.integers(0, 256, (n, 3, 4, 1), dtype=np.uint8)
    offsets = rng.integers(0, 3, (n, 2))
    flips = rng.random(n) < 0.5
    np.testing.assert_array_equal(crop_flip(x, offsets, flips, pad), crop_flip_loop(x, offsets, flips, pad))


def test_errors(rng):
    x = np.zeros((2, 4, 4, 1), np.float32)
    with pytest.raises(ValueError, match=r"random_crop_flip\(\) expected a batch of images of shape "
                                         r"\(N, H, W, C\)\. Received: x\.shape=\(4, 4, 1\)"):
        random_crop_flip(x[0], rng)
    with pytest.raises(ValueError, match=r"expected pad to be a non-negative integer\. Received: pad=-1"):
        random_crop_flip(x, rng, pad=-1)
    with pytest.raises(TypeError, match=r"expected rng to be a numpy\.random\.Generator"):
        random_crop_flip(x, "seed")
    with pytest.raises(ValueError, match=r"expected offsets in \[0, 2\] for pad=1\. Received: offsets from 0 to 3"):
        crop_flip(x, np.array([[0, 3], [0, 0]]), np.array([False, False]), 1)
    with pytest.raises(ValueError, match=r"expected offsets of shape \(2, 2\) and flips of shape \(2,\)"):
        crop_flip(x, np.zeros((2, 3), int), np.zeros(2, bool), 1)
    with pytest.raises(ValueError, match=r"RandomCropFlip expected pad"):
        RandomCropFlip(pad=1.5)
