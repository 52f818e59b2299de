"""The ``explain model --html`` page of a segmenter in a real headless Chromium: it loads with
no error and no request, every layer (the transposed convolution and the skip concatenation
among them) has its entry and a panel with its rule, the header draws the label and predicted
masks in the classes' colours, and a layer's check says how many entries had no derivative.

Needs Chromium, chromedriver and selenium, as ``test_page.py`` (whose browser it borrows).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from convprop.data.canvases import IGNORE
from convprop.explain.trace import Trace, trace
from convprop.explain.trace_text import segmentation_header
from convprop.plots import IGNORE_COLOUR, class_palette
from tests.explain.test_page import _needs_a_browser, browser  # noqa: F401 - fixtures
from tests.explain.test_trace_segment import SIZE, unet

CLASSES = ["ink", "edge", "background"]


@pytest.fixture(scope="module")
def opened(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Trace]:  # noqa: F811
    # A flat background with one bright block: tied maxima, so some entries are skipped.
    image = np.zeros((1, SIZE, SIZE))
    image[0, 4:10, 5:9] = 2.0
    mask = np.full((SIZE, SIZE), 2, np.int64)
    mask[4:10, 5:9] = 0
    mask[12:, :3] = IGNORE
    result = trace(unet("float64", seed=4), image, mask, checks=2, name="block", classes=CLASSES)
    page = tmp_path_factory.mktemp("segment-page") / "page.html"
    page.write_text(result.html())
    browser.get(page.as_uri())
    browser.find_element("css selector", "[data-sandbox]")
    return browser, result


def test_it_loads_with_no_error_and_no_request(opened: tuple[Any, Trace]) -> None:
    driver, _ = opened
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            assert message["params"]["request"]["url"].startswith("file://")


def test_every_layer_has_an_entry_and_a_panel_with_its_rule(opened: tuple[Any, Trace]) -> None:
    driver, result = opened
    entries = driver.find_elements("css selector", "#layers [data-layer]")
    assert [e.get_attribute("data-layer") for e in entries] == [e.name for e in result.entries]
    for entry, traced in zip(entries, result.entries, strict=True):
        entry.click()
        panel = driver.find_element("css selector", f'[data-panel="{traced.name}"]')
        assert panel.is_displayed()
        assert panel.find_element("css selector", ".rule").text == traced.rule
        assert panel.find_elements("css selector", '[data-map="output"] canvas')
        if traced.type == "ConvTranspose2d":
            heading = panel.find_element("css selector", '[data-map="grad_weight"] h3').text
            assert heading.startswith("dL/dw per input channel, output channel 0")
    kinds = {e.type for e in result.entries}
    assert {"ConvTranspose2d", "cat", "loss"} <= kinds


def test_the_header_draws_both_masks_in_the_classes_colours(opened: tuple[Any, Trace]) -> None:
    driver, result = opened
    assert driver.find_element("css selector", "#summary").text == segmentation_header(result)
    palette = class_palette(CLASSES)
    read = """
        const canvas = document.querySelector(`[data-mask=${arguments[0]}]`);
        const size = Number(canvas.dataset.cell);
        const pixel = canvas.getContext('2d').getImageData(
            arguments[2] * size, arguments[1] * size, 1, 1).data;
        return [canvas.width / size, canvas.height / size, pixel[0], pixel[1], pixel[2]];
    """
    label = np.asarray(result.label)
    prediction = np.asarray(result.prediction)
    for role, mask in (("label", label), ("prediction", prediction)):
        for i, j in ((0, 0), (5, 6), (14, 1)):
            width, height, *colour = driver.execute_script(read, role, i, j)
            assert (width, height) == (SIZE, SIZE)
            value = int(mask[i, j])
            expected = IGNORE_COLOUR if value == IGNORE else tuple(palette[value])
            assert tuple(colour) == tuple(expected), (role, i, j)
    legend = driver.find_element("css selector", "#masks .classes").text
    assert "ink" in legend and "background" in legend


def test_a_check_with_skipped_entries_says_so(opened: tuple[Any, Trace], tmp_path: Path) -> None:
    driver, result = opened
    entry = next(e for e in result.entries if e.check.get("skipped", 0))
    driver.find_element("css selector", f'[data-layer="{entry.name}"]').click()
    panel = driver.find_element("css selector", f'[data-panel="{entry.name}"]')
    text = panel.find_element("css selector", ".check").text
    assert f"; {entry.check['skipped']} entries with no derivative there" in text
    shot = tmp_path / "page.png"
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000
