"""``gfla demo`` in a real browser: Playwright drives headless Chromium through the page.

Starts ``gfla demo`` as a separate process with a tiny model, uploads a photo and a pose
file through the labelled inputs, drags a target joint with the mouse, clicks Generate and
checks the generated image. Playwright's own browser download is not used: the test
launches the system Chromium (Debian's ``chromium`` package, which ``.ci/run`` installs;
``GFLA_CHROMIUM`` names another executable). Skips, saying why, when either is missing.
"""

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from gfla_tf.export import testing

MODEL_SIZE = (32, 32)
JOINT = 4  # the right wrist: the joint the test drags


def _chromium():
    for candidate in (os.environ.get("GFLA_CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium found (apt-get install chromium, or set GFLA_CHROMIUM)"
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_browser")
    model = str(root / "generator.keras")
    testing.tiny_generator(seed=6).save(model)
    photo, source, _ = testing.random_request(1, MODEL_SIZE, seed=3, missing=0)
    # Keep the dragged joint away from the others so that the mouse grabs it alone.
    source = source[0]
    source[JOINT] = [6.0, 6.0]
    others = np.delete(np.arange(18), JOINT)
    source[others] = np.clip(source[others], 12.0, MODEL_SIZE[1] - 1.0)
    photo_path = str(root / "person.png")
    Image.fromarray(photo[0]).save(photo_path)
    pose_path = root / "person_keypoints.json"
    # OpenPose JSON, as a pose estimator writes it.
    pose_path.write_text(
        json.dumps(
            {"people": [{"pose_keypoints_2d": [v for p in source.tolist() for v in (*p, 0.9)]}]}
        )
    )
    return {"model": model, "photo": photo_path, "pose": str(pose_path), "source": source}


@pytest.fixture(scope="module")
def server(files, tmp_path_factory):
    from gfla_tf.data import synthetic

    # A gallery: the synthetic dataset at the model's size (sample photos and poses).
    poses = synthetic.generate_dataset(
        str(tmp_path_factory.mktemp("demo_poses") / "data"), 2, num_test_pairs=2, size=32
    )
    command = ["demo", "--model", files["model"], "--port", "0", "--poses", poses]
    process = subprocess.Popen(
        [sys.executable, "-m", "gfla_tf.cli.main", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url, lines = None, []
    deadline = time.monotonic() + 180
    try:
        while url is None:
            line = process.stdout.readline()
            if not line:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("gfla demo did not start:\n" + "".join(lines))
                continue
            lines.append(line)
            match = re.search(r"serving on (http://\S+/)", line)
            url = match.group(1) if match else None
        # The default address is the loopback one.
        assert url.startswith("http://127.0.0.1:"), url
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(server)
        page.wait_for_selector("body[data-ready='true']")
        yield page
        browser.close()
        assert not errors, errors


def _result_pixels(page):
    src = page.get_by_alt_text("Generated image", exact=True).get_attribute("src")
    assert src.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))))


def _generate(page):
    done = int(page.locator("#result").get_attribute("data-generation") or 0)
    page.get_by_role("button", name="Generate", exact=True).click()
    page.wait_for_selector(
        f"img[alt='Generated image'][data-generation='{done + 1}']", timeout=60000
    )


def _target_joint(page):
    x = float(page.get_by_label("Target joint x").input_value())
    y = float(page.get_by_label("Target joint y").input_value())
    return x, y


def test_edit_and_generate(page, files):
    page.get_by_label("Source photo", exact=True).set_input_files(files["photo"])
    sync_api.expect(page.get_by_role("status")).to_have_text("Photo person.png: 32x32 pixels.")
    page.get_by_label("Source pose", exact=True).set_input_files(files["pose"])
    sync_api.expect(page.get_by_role("status")).to_have_text(re.compile("^Pose read from"))

    _generate(page)
    result = page.get_by_alt_text("Generated image", exact=True)
    assert result.is_visible()
    size = page.evaluate(
        "() => { const i = document.getElementById('result');"
        " return [i.naturalHeight, i.naturalWidth]; }"
    )
    assert tuple(size) == MODEL_SIZE
    first = _result_pixels(page)
    assert first.shape == MODEL_SIZE + (3,)
    assert len(page.get_by_alt_text(re.compile("^Flow field at scale")).all()) == 2
    assert len(page.get_by_alt_text(re.compile("^Occlusion mask at scale")).all()) == 2
    assert page.get_by_role("link", name="Download image").get_attribute("href") == (
        page.get_by_alt_text("Generated image", exact=True).get_attribute("src")
    )

    # Drag the target's right wrist with the mouse, from (6, 6) to (24, 26) in photo pixels.
    canvas = page.locator("#target-canvas")
    box = canvas.bounding_box()
    scale = box["width"] / MODEL_SIZE[1]
    start = [float(v) for v in files["source"][JOINT]]
    page.mouse.move(box["x"] + start[0] * scale, box["y"] + start[1] * scale)
    page.mouse.down()
    page.mouse.move(box["x"] + 24 * scale, box["y"] + 26 * scale, steps=8)
    page.mouse.up()
    # The editor now shows the dragged joint where the mouse let it go.
    assert page.get_by_label("Target joint", exact=True).input_value() == str(JOINT)
    x, y = _target_joint(page)
    assert abs(x - 24) <= 0.6 and abs(y - 26) <= 0.6, (x, y)
    # ... and the source pose did not move.
    page.get_by_label("Source joint", exact=True).select_option(str(JOINT))
    assert page.get_by_label("Source joint x").input_value() == "6.0"
    assert page.get_by_label("Source joint y").input_value() == "6.0"

    _generate(page)
    second = _result_pixels(page)
    assert second.shape == MODEL_SIZE + (3,)
    assert np.abs(second.astype(int) - first).max() > 0, "moving a joint changed nothing"

    # Reset brings back the source pose: the first result again.
    page.get_by_role("button", name="Reset to the source pose").click()
    _generate(page)
    np.testing.assert_array_equal(_result_pixels(page), first)


def _joint(page, editor, index):
    page.get_by_label(f"{editor} joint", exact=True).select_option(str(index))
    x = page.get_by_label(f"{editor} joint x").input_value()
    y = page.get_by_label(f"{editor} joint y").input_value()
    return (float(x), float(y)) if x else None


def test_gallery_mirror_and_missing(page):
    # A sample photo brings its pose; the target follows it.
    page.get_by_role("button", name=re.compile("^Sample photo ")).first.click()
    sync_api.expect(page.get_by_role("status")).to_have_text(re.compile("^Photo "))
    neck = _joint(page, "Source", 1)
    assert neck is not None
    assert _joint(page, "Target", 1) == neck
    # A gallery pose replaces the target only.
    page.get_by_role("button", name=re.compile("^Target pose ")).nth(1).click()
    assert _joint(page, "Source", 1) == neck
    right, left = _joint(page, "Target", 2), _joint(page, "Target", 5)
    assert right is not None and left is not None
    # Mirror: left and right swap sides, x flips in the 32-pixel frame.
    page.get_by_role("button", name="Mirror left/right").click()
    assert _joint(page, "Target", 2) == pytest.approx((31 - left[0], left[1]), abs=0.06)
    assert _joint(page, "Target", 5) == pytest.approx((31 - right[0], right[1]), abs=0.06)
    # Marking a joint missing.
    page.get_by_label("Target joint", exact=True).select_option("4")
    page.get_by_label("Target joint missing").check()
    assert _joint(page, "Target", 4) is None
    option = page.get_by_label("Target joint", exact=True).locator("option").nth(4)
    assert option.text_content() == "4 Rwri (missing)"
    _generate(page)
    assert page.get_by_alt_text("Generated image", exact=True).is_visible()
