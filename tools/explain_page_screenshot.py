"""Regenerate docs/images/explain-model.png: the explain page of a small trained LeNet-5 run,
its second convolution's panel with one output cell hovered.

    python tools/explain_page_screenshot.py      # needs chromium, chromium-driver, selenium
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains

from convprop.explain.model import explain_run
from convprop.training import TrainConfig, fit

OUT = Path(__file__).resolve().parent.parent / "docs" / "images" / "explain-model.png"


def main() -> int:
    folder = Path(tempfile.mkdtemp())
    os.chdir(folder)  # the page's title names the run as given: runs/lenet5
    run = Path("runs") / "lenet5"
    fit(TrainConfig(epochs=2, limit=1500, seed=0), run, progress=False, log=lambda line: None)
    page = folder / "page.html"
    page.write_text(explain_run(run, None, 7, None).html())
    options = Options()
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--window-size=1400,900",
    ):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium") or "chromium"
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(page.as_uri())
        driver.find_element("css selector", '[data-layer="features.3"]').click()
        panel = driver.find_element("css selector", '[data-panel="features.3"]')
        canvas = panel.find_elements("css selector", '[data-map="output"] canvas')[1]
        ActionChains(driver).move_to_element_with_offset(canvas, -30, -25).perform()
        driver.save_screenshot(str(OUT))
    finally:
        driver.quit()
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
