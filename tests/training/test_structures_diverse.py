"""The broader structure prior (vesicles, ER, whole cells, membranes, dense filaments): each
generator keeps the common contract and renders the biology its docstring claims, measured on
the rendered density the way one would measure a real image."""

import inspect

import numpy as np
import pytest
from scipy import ndimage
from skimage import measure, morphology
from srscope.training.data.simulate import simulate_pair
from srscope.training.data.structures import GENERATORS, STRUCTURES

NEW = ("vesicles", "er", "cells", "membranes", "dense_filaments")
WIDEFIELD = ((400, 400), 0.1625)
STED = ((400, 400), 0.03)


def render(name, seed, shape, px_um, density=1.0):
    return GENERATORS[name](shape, px_um, np.random.default_rng(seed), density).density


def skeleton_length_px(image, rel_threshold):
    mask = image > rel_threshold * np.percentile(image[image > 0], 99)
    return int(morphology.skeletonize(mask).sum())


def test_new_structures_are_registered_after_the_original_six():
    assert STRUCTURES[:6] == ("filaments", "actin", "mitochondria", "nuclei", "beads", "ccps")
    assert STRUCTURES[6:] == NEW
    for name in NEW:
        params = inspect.signature(GENERATORS[name]).parameters
        assert list(params) == ["shape", "px_um", "rng", "density"]
        assert params["density"].default == 1.0
        assert (GENERATORS[name].__doc__ or "").count(" ") > 30  # says what biology and what sizes


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("grid", [WIDEFIELD, STED], ids=["widefield", "sted"])
def test_contract_determinism_and_non_trivial_content(name, grid):
    shape, px = grid
    a = render(name, 3, shape, px)
    b = render(name, 3, shape, px)
    c = render(name, 4, shape, px)
    assert a.shape == shape and a.dtype == np.float32
    assert np.isfinite(a).all() and a.min() >= 0
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.max() > 0
    assert (a > 0.05 * a.max()).sum() >= 100, "almost nothing rendered"
    assert (a > 0.05 * a.max()).mean() < 0.95, "no structure: the frame is flat"


def test_vesicle_sizes_brightness_spread_and_rings():
    px = 0.01  # resolves 50 nm
    diameters, totals, ring_like = [], [], 0
    for seed in range(3):
        img = render("vesicles", seed, (600, 600), px)
        labels = measure.label(img > 1e-4 * img.max())
        for region in measure.regionprops(labels, intensity_image=img):
            patch = region.image_intensity
            core = ndimage.binary_fill_holes(patch > 0.3 * patch.max())
            diameters.append((measure.regionprops(core.astype(np.uint8))[0].feret_diameter_max + 1) * px)
            totals.append(patch.sum())
            if core.sum() > 200:  # resolved (> ~160 nm): does the middle dip like a membrane-labelled shell?
                cy, cx = ndimage.center_of_mass(core)
                ring_like += patch[round(cy), round(cx)] < 0.6 * patch.max()
    diameters = np.array(diameters) * 1000
    assert len(diameters) > 30
    lo, med, hi = np.percentile(diameters, [5, 50, 95])
    assert 40 <= lo and hi <= 450 and 80 <= med <= 250, (lo, med, hi)
    assert hi / lo > 2.5, "sizes should be log-normally spread, not uniform"
    spread_decades = np.log10(np.percentile(totals, 95) / np.percentile(totals, 5))
    assert 0.7 < spread_decades < 2.5, spread_decades
    assert ring_like >= 3, "no hollow (ring-like) vesicles"


def test_vesicle_count_follows_the_density_argument():
    shape, px = (600, 600), 0.1625
    sparse = np.mean([(render("vesicles", s, shape, px, 0.5) > 0).mean() for s in range(3)])
    dense = np.mean([(render("vesicles", s, shape, px, 2.0) > 0).mean() for s in range(3)])
    assert dense > 2.0 * sparse


def test_er_is_a_connected_polygonal_network_with_a_nuclear_hole():
    for seed in range(2):
        img = render("er", seed, *STED)
        mask = img > 0.15 * np.percentile(img[img > 0], 99)
        labels = measure.label(mask, connectivity=2)
        sizes = np.bincount(labels.ravel())[1:]
        network = labels == np.argmax(sizes) + 1
        assert sizes.max() > 0.6 * sizes.sum(), "tubules should join into one network"
        assert measure.euler_number(network, connectivity=2) <= -10, "a mesh encloses many polygons"
        skel = morphology.skeletonize(mask)
        neighbours = ndimage.convolve(skel.astype(int), np.ones((3, 3), int), mode="constant") - 1
        assert measure.label(skel & (neighbours >= 3)).max() >= 20, "three-way junctions"
    shape, px = WIDEFIELD
    img = render("er", 1, shape, px)
    mask = img > 0.15 * np.percentile(img[img > 0], 99)
    holes = measure.label(ndimage.binary_fill_holes(mask) & ~mask)
    hole_areas = np.bincount(holes.ravel())[1:] * px * px
    assert hole_areas.max() > 25.0, "the nucleus (≥ 6 µm across) is a dark hole in the network"
    assert np.median(hole_areas) < 2.0, "the mesh itself has sub-2 µm² polygons"


def test_cells_vary_in_brightness_and_have_dimmer_nuclei():
    px = 0.1625
    for seed in (0, 1):
        img = render("cells", seed, (600, 600), px)
        labels = measure.label(img > 1e-3 * img.max())
        levels, nucleus_dim = [], 0
        for region in measure.regionprops(labels, intensity_image=img):
            if region.area * px * px < 30:
                continue
            values = region.image_intensity[region.image]
            levels.append(np.median(values))
            smooth = ndimage.gaussian_filter(region.image_intensity, 2.0 / px)
            interior = ndimage.binary_erosion(region.image, iterations=int(2.0 / px))
            if interior.sum() > 100:
                nucleus_dim += np.percentile(smooth[interior], 3) < 0.7 * np.median(smooth[interior])
        assert len(levels) >= 3
        assert max(levels) / min(levels) >= 3.0, levels
        assert nucleus_dim >= 2, "cells should show a dimmer nucleus"
        # sizes 15–60 µm: the largest cell in a 97 µm field is at least 12 µm across
        assert max(r.equivalent_diameter_area for r in measure.regionprops(labels)) * px > 12.0


def test_membranes_are_thin_closed_outlines():
    for seed in range(2):
        img = render("membranes", seed, *STED)
        mask = img > 0.2 * np.percentile(img[img > 0], 99.5)
        width_um = mask.sum() / morphology.skeletonize(mask).sum() * STED[1]
        assert width_um < 0.2, width_um  # 50–100 nm lines (thresholded, a little wider)
        shape, px = WIDEFIELD
        img = render("membranes", seed, shape, px)
        mask = img > 0.05 * np.percentile(img[img > 0], 99.5)
        assert mask.sum() / morphology.skeletonize(mask).sum() < 3.0  # ≤ 3 px wide at 162.5 nm
        labels = measure.label(mask, connectivity=2)
        outline = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
        assert measure.euler_number(outline, connectivity=2) <= -3, "outlines of touching cells enclose cells"
        assert mask.mean() < 0.1


def test_dense_filaments_hold_at_least_twice_the_filament_length():
    shape, px = STED
    ratios = [skeleton_length_px(render("dense_filaments", s, shape, px), 0.05)
              / skeleton_length_px(render("filaments", s, shape, px), 0.05) for s in range(4)]
    assert np.mean(ratios) >= 2.0, ratios
    assert min(ratios) >= 1.3, ratios
    # made of long (≥ 5 µm) filaments, not a mesh of short pieces: few free ends per µm of line
    img = render("dense_filaments", 0, shape, px)
    skel = morphology.skeletonize(img > 0.05 * np.percentile(img[img > 0], 99))
    neighbours = ndimage.convolve(skel.astype(int), np.ones((3, 3), int), mode="constant") - 1
    ends = (skel & (neighbours == 1))[2:-2, 2:-2].sum()
    assert ends / (skel.sum() * px) < 1.0


@pytest.mark.parametrize("name", NEW)
def test_simulate_pair_renders_each_new_structure(name):
    pair = simulate_pair("widefield", name, seed=1, hr_shape=(256, 256), misregister=False)
    assert pair.hr.shape == (256, 256) and np.isfinite(pair.hr).all()
    assert pair.hr_clean.max() > 2.0 * pair.background_hr
    assert np.percentile(pair.hr, 99.5) > 1.5 * pair.background_hr
