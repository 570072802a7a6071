"""Takes the docs' screenshot of ``gfla demo`` (docs/demo.png) with headless Chromium.

Run ``gfla demo`` first (after ``gfla quickstart``, so that the page offers the synthetic
sample photos and target poses), then::

    python scripts/demo_screenshot.py --url http://127.0.0.1:8080/ --out docs/demo.png

Picks the first sample photo and a gallery target pose, generates, and saves the page as a
PNG (``--palette``: 256 colours, smaller). Needs ``pip install playwright`` and a
Chromium (``--chromium``, default the ``chromium`` on PATH).
"""

import argparse
import io
import shutil

from PIL import Image
from playwright.sync_api import expect, sync_playwright

from gfla_tf.io import atomic_path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080/")
    parser.add_argument("--out", default="docs/demo.png")
    parser.add_argument("--chromium", default=shutil.which("chromium"))
    parser.add_argument("--pose", type=int, default=3, help="index of the gallery pose")
    parser.add_argument("--sample", type=int, default=0, help="index of the sample photo")
    parser.add_argument("--width", type=int, default=1180)
    parser.add_argument("--palette", action="store_true", help="256 colours (smaller file)")
    args = parser.parse_args()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, headless=True)
        page = browser.new_page(viewport={"width": args.width, "height": 900})
        page.goto(args.url)
        page.wait_for_selector("body[data-ready='true']")
        page.locator("#samples button").nth(args.sample).click()
        expect(page.locator("#source-hint")).to_be_hidden()
        page.locator("#gallery button").nth(args.pose).click()
        page.get_by_role("button", name="Generate", exact=True).click()
        page.wait_for_selector("img[alt='Generated image'][data-generation='1']")
        png = page.screenshot(full_page=True)
        browser.close()
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if args.palette:
        image = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    with atomic_path(args.out) as tmp:
        image.save(tmp, format="PNG", optimize=True)
    print(args.out)


if __name__ == "__main__":
    main()
