"""The latent-space explorer page, in a real headless Chromium: it loads without a console error, its
in-browser decoder gives PyTorch's pixels, and its attribute slider walks as the Python walk does."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import run_in_process
from ppl_models.runs import experiment, explore
from ppl_models.runs.experiment import Refused
from ppl_models.runs.latent import walk

HAVE_CHROMIUM = Path(explore.CHROMIUM).exists()
try:
    import playwright.sync_api  # noqa: F401
    HAVE_PLAYWRIGHT = True
except ImportError:
    HAVE_PLAYWRIGHT = False
if os.environ.get("CI") and not (HAVE_CHROMIUM and HAVE_PLAYWRIGHT):
    # CI installs both (.ci/run): a missing browser there must fail, not skip
    raise RuntimeError(f"CI without Chromium ({explore.CHROMIUM}) or Playwright: the page's tests cannot run")
browser_needed = pytest.mark.skipif(not (HAVE_CHROMIUM and HAVE_PLAYWRIGHT),
                                    reason="needs Debian's chromium and the playwright package")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Smoke-size runs: an MLP VAE with z = 2, a conv VAE with z = 3, the autoencoder, and M2."""
    root = tmp_path_factory.mktemp("explore")
    folders = {"vae": root / "vae", "conv": root / "conv", "ae": root / "ae", "m2": root / "m2"}
    common = ["--smoke", "--no-progress", "--eval-samples", "4", "--eval-images", "20"]
    run_in_process("vae", [*common, "--z-dim", "2", "--hidden", "32", "32", "--out", folders["vae"]])
    run_in_process("vae", [*common, "--z-dim", "3", "--decoder", "conv", "--guide", "conv", "--out", folders["conv"]])
    run_in_process("vae", [*common, "--z-dim", "2", "--hidden", "32", "32", "--guide", "delta", "--beta", "0",
                           "--out", folders["ae"]])
    run_in_process("ssvae", ["--smoke", "--no-progress", "--labeled", "100", "--out", folders["m2"]])
    return folders


@pytest.fixture(scope="module")
def browser():
    if not (HAVE_CHROMIUM and HAVE_PLAYWRIGHT):
        pytest.skip("needs Debian's chromium and the playwright package")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = explore.open_browser(p)
        yield b
        b.close()


def open_page(browser, path):
    page = browser.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(Path(path).resolve().as_uri())
    try:
        page.wait_for_function("window.explorer && window.explorer.ready", timeout=30_000)
    except Exception as e:
        raise AssertionError(f"the page did not start: {errors or e}") from None
    return page, errors


def test_decoder_layers_the_page_cannot_compute_are_refused():
    with pytest.raises(Refused, match="GELU is not one of them"):
        explore.decoder_ops(nn.Sequential(nn.Linear(2, 3), nn.GELU()))
    with pytest.raises(Refused, match="undilated"):
        explore.decoder_ops(nn.Conv2d(1, 1, 3, dilation=2))
    ops = explore.decoder_ops(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 4)))
    assert [o["op"] for o in ops] == ["linear", "tanh", "linear", "sigmoid"]


def test_a_run_the_explorer_does_not_take_is_refused_in_one_line(tmp_path):
    import subprocess
    import sys
    folder = tmp_path / "draw"
    run_in_process("draw", ["--smoke", "--no-progress", "--out", folder])
    r = subprocess.run([sys.executable, "-m", "ppl_models.runs.explore", str(folder)], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "the explorer takes runs of examples/vae.py and examples/ssvae.py" in r.stderr.strip().splitlines()[-1]


@browser_needed
@pytest.mark.parametrize("name", ["vae", "conv", "m2"])
def test_the_page_decodes_as_pytorch_does(runs, browser, tmp_path, name):
    path, payload = explore.write_page([runs[name]], tmp_path / "page.html", smoke=True)
    run = experiment.rebuild(runs[name])
    page, errors = open_page(browser, path)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, payload[0]["z_dim"], generator=g) * 1.5
    labels = [0, 3, 5, 7, 9]
    for i in range(len(z)):
        y = labels[i] if name == "m2" else 0
        got = np.array(page.evaluate("([z, y]) => window.explorer.decode(0, z, y)", [z[i].tolist(), y]))
        with torch.no_grad():
            want = (run.model.decode(z[i:i + 1], torch.tensor([y])) if name == "m2"
                    else run.model.decode(z[i:i + 1]))[0].double().numpy()
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert errors == []
    page.close()


@browser_needed
def test_the_thickness_slider_walks_as_the_python_walk_does(runs, browser, tmp_path):
    path, payload = explore.write_page([runs["vae"]], tmp_path / "page.html", smoke=True)
    run = experiment.rebuild(runs["vae"])
    page, errors = open_page(browser, path)
    _, _, test = run.load_data()
    c = run.guide.encode(test.x[3:4]).detach()
    v = torch.tensor(payload[0]["attributes"][0]["vector"], dtype=torch.float32)
    assert payload[0]["attributes"][0]["name"] == "thickness" and v.norm() > 0
    ks = [-2.0, 0.0, 1.5]
    want = walk(run.model.decode, c, v, ks)[:, 0].double().numpy()
    page.evaluate("window.explorer.pinTest(0, 3)")
    np.testing.assert_allclose(page.evaluate("window.explorer.pinnedCode(0)"), c[0].double().numpy(), atol=1e-6)
    slider = page.locator('section[data-run="0"] input[data-attribute="thickness"]')
    seen = []
    for k, w in zip(ks, want):
        slider.fill(str(k))  # as a person drags it: the input event moves the pinned code
        got = np.array(page.evaluate("window.explorer.pinnedPixels(0)"))
        np.testing.assert_allclose(got, w, atol=1e-4, rtol=0)
        seen.append(got)
    assert np.abs(seen[0] - seen[2]).max() > 1e-3  # the slider changes the image
    # the pointer over the map decodes the point under it
    box = page.locator('section[data-run="0"] canvas.map').bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.75, box["y"] + box["height"] * 0.25)
    hover = page.evaluate("window.explorer.hoverCode(0)")
    assert hover is not None and hover[0] > 0 and hover[1] > 0  # right and up of the centre
    assert errors == []
    page.close()


@browser_needed
def test_two_runs_side_by_side_share_their_picks_and_the_cli_takes_a_screenshot(runs, browser, tmp_path):
    import subprocess
    import sys
    out, png = tmp_path / "ae_vs_vae.html", tmp_path / "ae_vs_vae.png"
    r = subprocess.run([sys.executable, "-m", "ppl_models.runs.explore", "--smoke", str(runs["ae"]), str(runs["vae"]),
                        "--out", str(out), "--screenshot", str(png), "--pin", "5", "--to", "7", "--set", "slant=1"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"wrote {png}" in r.stdout
    from PIL import Image
    assert Image.open(png).size[0] >= 1000
    page, errors = open_page(browser, out)
    assert page.locator("section.panel").count() == 2
    assert page.evaluate("[window.explorer.pinnedTest(0), window.explorer.pinnedTest(1)]") == [0, 0]
    page.evaluate("window.explorer.pick(0, 5)")  # one test image picked in the first run's map
    assert page.evaluate("[window.explorer.pinnedTest(0), window.explorer.pinnedTest(1)]") == [5, 5]
    assert errors == []
    page.close()


@browser_needed
def test_a_celeba_run_gets_its_attribute_sliders_and_rgb_pixels(tmp_path, browser):
    from test_images import celeba_fixture
    celeba_fixture(tmp_path / "celeba", n=12)
    folder = tmp_path / "faces"
    run_in_process("vae", ["--dataset", f"celeba:{tmp_path / 'celeba'}", "--image-size", "8", "--smoke", "--batch-size",
                           "2", "--hidden", "16", "--z-dim", "3", "--out", folder, "--no-progress"])
    path, payload = explore.write_page([folder], tmp_path / "faces.html", celeba_attributes=["Attr_0", "Attr_3"],
                                       smoke=True)
    assert [a["name"] for a in payload[0]["attributes"]] == ["Attr_0", "Attr_3"]
    assert payload[0]["shape"] == [3, 8, 8] and not payload[0]["invert"]
    run = experiment.rebuild(folder)
    page, errors = open_page(browser, path)
    z = [0.3, -1.0, 2.0]
    got = np.array(page.evaluate("(z) => window.explorer.decode(0, z)", z))
    with torch.no_grad():
        want = run.model.decode(torch.tensor([z]))[0].double().numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert page.locator('section[data-run="0"] input[data-attribute="Attr_3"]').count() == 1
    assert errors == []
    page.close()
    with pytest.raises(Refused, match="--attributes: unknown"):
        explore.write_page([folder], tmp_path / "no.html", celeba_attributes=["Blond"], smoke=True)


@browser_needed
def test_for_larger_z_the_map_is_a_plane_of_the_codes_and_the_marks_follow_it(runs, browser, tmp_path):
    path, payload = explore.write_page([runs["conv"]], tmp_path / "page.html", smoke=True)
    run = experiment.rebuild(runs["conv"])
    planes = payload[0]["planes"]
    assert payload[0]["z_dim"] == 3 and [p["name"] for p in planes] == [
        "the codes' first two principal components", "the thickness and slant vectors"]
    for p in planes:  # orthonormal directions
        u, v = torch.tensor(p["u"], dtype=torch.float64), torch.tensor(p["v"], dtype=torch.float64)
        assert abs(u.norm() - 1) < 1e-9 and abs(v.norm() - 1) < 1e-9 and abs(u @ v) < 1e-9
    page, errors = open_page(browser, path)
    c = run.guide.encode(run.load_data()[2].x[4:5]).detach().double()[0]
    page.evaluate("window.explorer.pinTest(0, 4)")
    for k, p in enumerate(planes):
        page.evaluate(f"window.explorer.setPlane(0, {k})")
        o, u, v = (torch.tensor(p[key], dtype=torch.float64) for key in ("origin", "u", "v"))
        want = [float((c - o) @ u), float((c - o) @ v)]
        np.testing.assert_allclose(page.evaluate("window.explorer.pinnedOnMap(0)"), want, atol=1e-5)
    assert errors == []
    page.close()


def test_runs_whose_decoder_goes_through_a_second_latent_are_refused(tmp_path):
    folder = tmp_path / "sdgm"
    run_in_process("ssvae", ["--smoke", "--no-progress", "--form", "sdgm", "--labeled", "100", "--out", folder])
    with pytest.raises(Refused, match="the two-layer VAE and the SDGM draw x through a second latent"):
        explore.write_page([folder], tmp_path / "page.html", smoke=True)
