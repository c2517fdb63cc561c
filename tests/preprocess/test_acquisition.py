"""Acquisition augmentation: identity when off, determinism, sharding, and that each family changes what it
should (and only that), on windowed phantom slices; the torch JPEG against Pillow's."""

import io
import json
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from kidneyct.synthetic.phantom import render_slice, sample_patient
from kidneyct.preprocess.window import apply_window
from kidneyct.preprocess.acquisition import (
    ACQUISITIONS, COLUMNS, FAMILIES, PARAMS, SPANS, AcquisitionAugmentation, down_up_matrix, families,
    hashed_normal, jpeg_compress,
)

SIDE = 96
BODY = 0.1  # tissue in these slices is above 0.3; a tenth keeps partial-volume rims out of interior statistics


@pytest.fixture(scope="module")
def slices() -> torch.Tensor:
    """Eight windowed (40/400) phantom slices, [8, 1, 96, 96] in [0, 1], air exactly 0."""
    rng = np.random.default_rng(12)
    images = [apply_window(render_slice(sample_patient(rng, size=SIDE), z)[0], 40, 400)
              for z in np.linspace(-0.5, 0.5, 8)]
    return torch.from_numpy(np.stack(images)).unsqueeze(1)


def only(family: str, **ranges) -> AcquisitionAugmentation:
    """One family always on, with ranges in this test's pixels (reference_side = the image side)."""
    return families([family], AcquisitionAugmentation(reference_side=SIDE, **ranges), probability=1.0)


def fixed(family: str, images: torch.Tensor, **values: float) -> torch.Tensor:
    """One family on every image with the given parameter values (COLUMNS names), the rest drawn."""
    policy = only(family)
    params = policy.sample(len(images), torch.Generator().manual_seed(0))
    for name, value in values.items():
        params[:, SPANS[family][0] + 1 + COLUMNS[family].index(name)] = value
    return policy.apply(images, params)


def run(policy: AcquisitionAugmentation, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    return policy(images, torch.Generator().manual_seed(seed))


def high_frequency(images: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean squared discrete Laplacian over `mask` (interior pixels)."""
    x = images[:, 0]
    laplacian = 4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:]
    return float(laplacian.square()[mask[:, 0, 1:-1, 1:-1]].mean())


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a.double() - b.double()).square().mean()))


def test_all_families_off_is_bit_identical(slices):
    assert torch.equal(run(ACQUISITIONS["none"], slices), slices)
    images = slices.repeat(4, 1, 1, 1)
    mixed = families(FAMILIES, AcquisitionAugmentation(reference_side=SIDE), 0.15)  # a quarter: all off
    params = mixed.sample(len(images), torch.Generator().manual_seed(3))
    out = mixed.apply(images, params)
    off = (params[:, [flag for flag, _ in SPANS.values()]] == 0).all(1)
    on = ~off
    assert off.any() and on.any()  # this seed draws both kinds of rows
    assert torch.equal(out[off], images[off])
    assert all(not torch.equal(out[i], images[i]) for i in on.nonzero()[:, 0])


def test_same_generator_same_images_each_sample_its_own(slices):
    strong = ACQUISITIONS["strong"]
    a, b = run(strong, slices, seed=5), run(strong, slices, seed=5)
    assert torch.equal(a, b)
    assert not torch.equal(a, run(strong, slices, seed=6))
    same = slices[:1].expand(6, -1, -1, -1)
    out = run(families(FAMILIES, "strong", probability=1.0), same)
    assert all(not torch.equal(out[0], out[i]) for i in range(1, 6))


def test_switching_a_family_off_keeps_the_other_families_draws():
    generator = lambda: torch.Generator().manual_seed(9)  # noqa: E731
    full = ACQUISITIONS["strong"].sample(32, generator())
    no_noise = families([f for f in FAMILIES if f != "noise"], "strong").sample(32, generator())
    flag = SPANS["noise"][0]
    assert no_noise[:, flag].eq(0).all() and full[:, flag].eq(1).any()
    keep = [c for c in range(PARAMS) if c != flag]
    assert torch.equal(full[:, keep], no_noise[:, keep])


def test_rows_of_a_global_batch_give_the_same_images_on_any_number_of_ranks(slices):
    policy = families(FAMILIES, "strong", probability=0.7)
    params = policy.sample(len(slices), torch.Generator().manual_seed(1))
    whole = policy.apply(slices, params)
    for rank in range(2):  # rank r takes every second image, as the engine shards a global batch
        shard = policy.apply(slices[rank::2], params[rank::2])
        torch.testing.assert_close(shard, whole[rank::2], atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_shape_dtype_and_range_are_kept(slices, dtype):
    out = run(families(FAMILIES, "strong", probability=1.0), slices.to(dtype))
    assert out.shape == slices.shape and out.dtype == dtype
    assert out.min() >= 0 and out.max() <= 1


def test_bad_inputs_are_refused(slices):
    policy = ACQUISITIONS["mild"]
    with pytest.raises(ValueError, match="images"):
        policy.apply(slices.repeat(1, 3, 1, 1), policy.sample(len(slices)))
    with pytest.raises(ValueError, match="params"):
        policy.apply(slices, policy.sample(len(slices) - 1))
    with pytest.raises(ValueError, match="noise_p"):
        AcquisitionAugmentation(noise_p=1.5)
    with pytest.raises(ValueError, match="jpeg_quality"):
        AcquisitionAugmentation(jpeg_quality=(95, 30))
    with pytest.raises(ValueError, match="unknown families"):
        families(["noise", "moire"])
    with pytest.raises(ValueError, match="unknown preset"):
        families(["noise"], "extreme")


def test_small_and_non_square_images(slices):
    """Kernels wider than a tiny image are narrowed to fit; non-square sides are handled per axis."""
    images = F.interpolate(slices, size=(16, 24), mode="area")
    policy = families(FAMILIES, AcquisitionAugmentation(reference_side=8, blur_sigma=(5.0, 5.0)), 1.0)
    out = run(policy, images)
    assert out.shape == images.shape and 0 <= out.min() and out.max() <= 1
    assert not torch.equal(out, images)


def test_presets_round_trip_through_json():
    for name, policy in ACQUISITIONS.items():
        back = AcquisitionAugmentation.from_dict(json.loads(json.dumps(policy.to_dict())))
        assert back == policy, name
    assert all(getattr(ACQUISITIONS["none"], f"{f}_p") == 0 for f in FAMILIES)
    assert all(getattr(ACQUISITIONS["strong"], f"{f}_p") > 0 for f in FAMILIES)
    noise = families(["noise"], "mild")
    assert noise.noise_p == ACQUISITIONS["mild"].noise_p and noise.noise_sigma == ACQUISITIONS["mild"].noise_sigma
    assert all(getattr(noise, f"{f}_p") == 0 for f in FAMILIES if f != "noise")


def test_noise_adds_high_frequencies_inside_the_body_and_leaves_air_black(slices):
    out = run(only("noise", noise_sigma=(0.03, 0.03), noise_correlation=(0.0, 0.0)), slices)
    assert torch.equal(out[slices == 0], slices[slices == 0])  # air stays exactly black
    tissue = (slices > BODY) & (slices < 0.9)  # not clipped at either end
    # Independent white noise adds 20 sigma^2 to the mean squared Laplacian (measured: 86% of it, the
    # rest lost at the body's edge and to clipping).
    added = high_frequency(out, tissue) - high_frequency(slices, tissue)
    assert added == pytest.approx(20 * 0.03**2, rel=0.25)
    assert (out - slices)[tissue].std().item() == pytest.approx(0.03, rel=0.1)
    assert (out - slices)[tissue].mean().abs() < 0.003


def test_correlated_noise_keeps_its_sigma_and_is_smoother(slices):
    tissue = (slices > BODY) & (slices < 0.9)
    white = run(only("noise", noise_sigma=(0.03, 0.03), noise_correlation=(0.0, 0.0)), slices) - slices
    coloured = run(only("noise", noise_sigma=(0.03, 0.03), noise_correlation=(1.5, 1.5)), slices) - slices
    assert coloured[tissue].std().item() == pytest.approx(0.03, rel=0.15)

    def neighbour_correlation(noise: torch.Tensor) -> float:
        pair = tissue[..., 1:] & tissue[..., :-1]
        a, b = noise[..., 1:][pair], noise[..., :-1][pair]
        return float(torch.corrcoef(torch.stack([a, b]))[0, 1])

    assert abs(neighbour_correlation(white)) < 0.1
    assert neighbour_correlation(coloured) > 0.7


def test_hashed_noise_is_standard_normal_and_depends_only_on_the_seed():
    noise = hashed_normal(torch.tensor([7.0, 8.0, 9.0]), (128, 128))
    assert noise.mean().abs() < 0.02 and noise.std().item() == pytest.approx(1.0, abs=0.02)
    assert abs(float(torch.corrcoef(noise[:2].flatten(1))[0, 1])) < 0.02  # seeds are independent
    assert torch.equal(hashed_normal(torch.tensor([8.0]), (128, 128))[0], noise[1])


@pytest.mark.parametrize("family,ranges", [
    ("blur", {"blur_sigma": (1.0, 1.0)}),
    ("resolution", {"resolution_factor": (0.5, 0.5)}),
])
def test_blur_and_resolution_remove_detail_and_keep_intensity(slices, family, ranges):
    body = slices > BODY
    out = run(only(family, **ranges), slices)
    assert high_frequency(out, body) < 0.5 * high_frequency(slices, body)
    assert (out.mean() - slices.mean()).abs() < 0.005  # no brightness change


def test_sharpen_adds_detail_and_keeps_intensity(slices):
    body = slices > BODY
    out = run(only("sharpen", sharpen_sigma=(1.0, 1.0), sharpen_amount=(0.8, 0.8)), slices)
    assert high_frequency(out, body) > 1.5 * high_frequency(slices, body)
    assert (out.mean() - slices.mean()).abs() < 0.01


def test_resolution_operator_equals_area_down_then_bilinear_up():
    images = torch.rand(3, 1, 40, 52)
    rows, cols = torch.tensor([17, 40, 9]), torch.tensor([22, 52, 31])
    out = down_up_matrix(rows, 40) @ images[:, 0] @ down_up_matrix(cols, 52).transpose(1, 2)
    for i in range(3):
        small = F.interpolate(images[i:i + 1], size=(int(rows[i]), int(cols[i])), mode="area")
        expected = F.interpolate(small, size=(40, 52), mode="bilinear", align_corners=False)
        torch.testing.assert_close(out[i], expected[0, 0], atol=1e-5, rtol=0)
    assert torch.equal(out[1], images[1, 0])  # keeping every pixel is the identity


def test_resolution_is_relative_to_the_reference_side(slices):
    """At a reference side of 256 px, half of it is still more than these 96 px hold: nothing is lost."""
    policy = families(["resolution"], AcquisitionAugmentation(resolution_factor=(0.5, 0.5)), probability=1.0)
    assert torch.equal(run(policy, slices), slices)


def quantised(images: torch.Tensor) -> torch.Tensor:
    return torch.round(images * 255) / 255


@pytest.mark.parametrize("side", [96, 100])  # 100: padded to whole blocks
@pytest.mark.parametrize("quality", [30, 60, 95])
def test_jpeg_matches_pillow(slices, side, quality):
    images = quantised(F.interpolate(slices[:3], size=(side, side), mode="bilinear", align_corners=False))
    ours = jpeg_compress(images, torch.full((3,), float(quality)))
    for image, mine in zip(images, ours):
        buffer = io.BytesIO()
        Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8)).save(buffer, "JPEG", quality=quality)
        pillow = torch.from_numpy(np.asarray(Image.open(buffer)).astype(np.float32) / 255)
        assert psnr(mine[0], pillow) > 40  # measured 46-56 dB (float DCT vs libjpeg's integer DCT)


def blockiness(images: torch.Tensor) -> float:
    """Mean absolute step across 8x8 block borders over the mean step inside blocks (columns)."""
    steps = (images[..., 1:] - images[..., :-1]).abs()
    border = torch.zeros(steps.shape[-1], dtype=torch.bool)
    border[7::8] = True  # the step between column 8k+7 and 8k+8
    return float(steps[..., border].mean() / steps[..., ~border].mean())


def test_jpeg_quality_95_is_near_identity_and_30_is_blocky(slices):
    images = quantised(slices)
    high = jpeg_compress(images, torch.full((8,), 95.0))
    low = jpeg_compress(images, torch.full((8,), 30.0))
    assert psnr(high, images) > 40 > psnr(low, images)
    # Measured on these phantoms: 1.09 before, 1.08 at quality 95, 1.29 at quality 30.
    assert blockiness(low) > blockiness(images) + 0.15
    assert abs(blockiness(high) - blockiness(images)) < 0.05
    assert torch.equal(torch.round(low * 255), low * 255)  # decoded to 8-bit levels


def test_jpeg_family_at_a_larger_reference_side_adds_only_the_compression_error(slices):
    images = quantised(slices)
    out = run(families(["jpeg"], AcquisitionAugmentation(jpeg_quality=(30, 30)), probability=1.0), images)
    native = jpeg_compress(images, torch.full((8,), 30.0))
    # Compressed at 256 px, the error resized to 96 px: smaller than compressing at 96 px, and without
    # 8 px blocks here (measured PSNR: 46 dB vs 26 dB).
    assert psnr(native, images) + 10 < psnr(out, images) < 55
    assert abs(blockiness(out) - blockiness(images)) < 0.05


def saturated(images: torch.Tensor, body: torch.Tensor) -> float:
    return float(((images <= 0) | (images >= 1))[body].float().mean())


def test_narrower_window_saturates_more_and_wider_less(slices):
    body = slices > BODY
    narrow = run(only("window", window_level_shift=0.0, window_width_ratio=(0.6, 0.6)), slices)
    wide = run(only("window", window_level_shift=0.0, window_width_ratio=(1.5, 1.5)), slices)
    assert saturated(narrow, body) > saturated(slices, body) + 0.05
    assert saturated(wide, body) < saturated(slices, body)
    for out in (narrow, wide):
        assert torch.equal(out[slices == 0], slices[slices == 0])  # air stays black
    assert torch.equal(wide > 0, slices > 0)  # a wider window keeps everything visible visible
    darker = fixed("window", slices, level_shift=0.1, width_ratio=1.0)
    assert darker[body].mean() < slices[body].mean() - 0.05  # a higher level darkens the tissue


def test_gamma_keeps_black_white_and_order(slices):
    assert torch.equal(fixed("gamma", slices, gamma=1.0), slices)
    for gamma in (0.7, 1.4):
        out = fixed("gamma", slices, gamma=gamma)
        for level in (0.0, 1.0):
            assert torch.equal(out[slices == level], slices[slices == level])
        inside = (slices > 0) & (slices < 1)
        assert ((out > slices) if gamma < 1 else (out < slices))[inside].all()
        order = slices[0].flatten().argsort()
        assert (out[0].flatten()[order].diff() >= 0).all()  # monotone: no intensity order changes


def extent(images: torch.Tensor) -> torch.Tensor:
    """Span of the columns that hold tissue, per image (an affine zoom scales it)."""
    columns = (images[:, 0] > BODY).any(1)
    index = torch.arange(columns.shape[1]).expand_as(columns)
    return (torch.where(columns, index, -1).amax(1) - torch.where(columns, index, 10**6).amin(1) + 1).float()


@pytest.mark.parametrize("scale", [0.8, 1.2])
def test_zoom_changes_the_body_extent_and_not_its_intensities(slices, scale):
    framed = F.pad(slices, (16,) * 4)  # room to zoom in without cropping the body
    out = run(only("fov", fov_scale=(scale, scale), fov_shift=0.0), framed)
    assert ((extent(out) / extent(framed) - scale).abs() < 0.03).all()
    if scale < 1:
        assert out[..., :24].max() == 0 and out[..., -24:].max() == 0  # a wider black frame
    # The same intensities, only moved and resampled: the summed intensity scales with the area.
    mass = out.sum((1, 2, 3)) / framed.sum((1, 2, 3)) / scale**2
    assert ((mass - 1).abs() < 0.01).all()


def test_strong_preset_on_a_batch_of_64_at_96px(slices):
    images = slices.repeat(8, 1, 1, 1)
    policy = ACQUISITIONS["strong"]
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    params = policy.sample(64, generator)
    out = policy.apply(images, params)
    print(f"strong preset, 64 x 96 px, CPU: {1000 * (time.perf_counter() - start):.0f} ms")
    assert out.shape == images.shape and 0 <= out.min() and out.max() <= 1
    for family in FAMILIES:  # each family on in about its share of the rows
        share = params[:, SPANS[family][0]].mean().item()
        assert abs(share - getattr(policy, f"{family}_p")) < 0.2, family


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(slices):
    policy = families(FAMILIES, "strong", probability=1.0)
    params = policy.sample(len(slices), torch.Generator().manual_seed(4))
    no_jpeg = params.clone()
    no_jpeg[:, SPANS["jpeg"][0]] = 0
    cpu = policy.apply(slices, no_jpeg)
    gpu = policy.apply(slices.cuda(), no_jpeg.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)
    # JPEG rounds: a coefficient at a rounding boundary may fall either way, so compare by PSNR
    assert psnr(policy.apply(slices.cuda(), params.cuda()).cpu(), policy.apply(slices, params)) > 45
    generator = torch.Generator("cuda").manual_seed(0)
    out = ACQUISITIONS["strong"](slices.cuda(), generator)
    assert out.device.type == "cuda" and out.shape == slices.shape
