"""The ``explain model --html`` page in a real headless Chromium: it loads with no console error
and no request outside the file, every layer of the trace has its entry and panel, a hovered
cell's formula has the trace's numbers, and the sandbox agrees with the engine's sizes.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package (CI installs
them: ``.ci/run``); skipped with the reason where they are missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from convprop.explain.trace import Trace, trace
from convprop.ops.geometry import conv_output_size
from convprop.training import TrainConfig, fit, load_run
from tests.conftest import missing

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module", autouse=True)
def _needs_a_browser() -> None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing("needs selenium (pip install -e '.[test]')")
    if CHROMIUM is None or DRIVER is None:
        missing(
            "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        )


@pytest.fixture(scope="module")
def browser(_needs_a_browser: None) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Trace, Path]:
    folder = tmp_path_factory.mktemp("page")
    run = folder / "run"
    fit(
        TrainConfig(epochs=1, limit=60, batch_size=20, augment=[], seed=2),
        run,
        progress=False,
        log=lambda line: None,
    )
    network, checkpoint = load_run(run)
    image = np.random.default_rng(0).standard_normal(checkpoint.input_shape).astype(np.float32)
    result = trace(network, image, 4, checks=1, run=str(run), name="noise")
    page = folder / "page.html"
    page.write_text(result.html())
    return result, page


@pytest.fixture(scope="module")
def opened(browser: Any, traced: tuple[Trace, Path]) -> tuple[Any, Trace]:
    result, page = traced
    browser.get(page.as_uri())
    browser.find_element("css selector", "[data-sandbox]")
    return browser, result


def test_it_loads_with_no_error_and_no_request(opened: tuple[Any, Trace]) -> None:
    import json

    browser, _ = opened
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    requests = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requests.append(message["params"]["request"]["url"])
    assert requests and all(url.startswith("file://") for url in requests), requests


def test_every_layer_has_an_entry_and_a_panel_with_its_maps(opened: tuple[Any, Trace]) -> None:
    browser, result = opened
    entries = browser.find_elements("css selector", "#layers [data-layer]")
    assert [e.get_attribute("data-layer") for e in entries] == [e.name for e in result.entries]
    for entry in entries:
        name = entry.get_attribute("data-layer")
        entry.click()
        panel = browser.find_element("css selector", f'[data-panel="{name}"]')
        assert panel.is_displayed()
        assert panel.find_elements("css selector", '[data-map="output"] canvas')
        shown = browser.find_elements("css selector", ".panel.shown")
        assert [p.get_attribute("data-panel") for p in shown] == [name]


def _hover(browser: Any, canvas: Any, i: int, j: int) -> None:
    """Move the pointer over cell (i, j) of a map (scrolled into view first)."""
    from selenium.webdriver.common.action_chains import ActionChains

    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", canvas)
    size = int(canvas.get_attribute("data-cell"))
    width, height = canvas.size["width"], canvas.size["height"]
    ActionChains(browser).move_to_element_with_offset(
        canvas, int((j + 0.5) * size - width / 2), int((i + 0.5) * size - height / 2)
    ).perform()


def test_a_hovered_output_shows_its_sum_of_products(opened: tuple[Any, Trace]) -> None:
    browser, result = opened
    entry = next(
        e for e in result.entries if e.type == "Conv2d" and e.name != result.entries[0].name
    )
    browser.find_element("css selector", f'[data-layer="{entry.name}"]').click()
    panel = browser.find_element("css selector", f'[data-panel="{entry.name}"]')
    canvas = panel.find_elements("css selector", '[data-map="output"] canvas')[2]
    for i, j in ((0, 0), (3, 5), (7, 2)):
        _hover(browser, canvas, i, j)
        box = panel.find_element("css selector", "[data-formula]")
        expected = float(entry.output[2, i, j])
        assert float(box.get_attribute("data-value")) == pytest.approx(expected, rel=1e-4, abs=1e-5)
        bias = f"{entry.bias[2]:.4f}"
        assert f"= {bias} + (" in box.text and "products in all" in box.text


def test_a_hovered_input_gradient_shows_where_it_came_from(opened: tuple[Any, Trace]) -> None:
    browser, result = opened
    browser.find_element("css selector", "#view-backward").click()
    for kind in ("Conv2d", "MaxPool2d"):
        entry = next(
            e for e in result.entries if e.type == kind and e.name != result.entries[0].name
        )
        browser.find_element("css selector", f'[data-layer="{entry.name}"]').click()
        panel = browser.find_element("css selector", f'[data-panel="{entry.name}"]')
        canvas = panel.find_elements("css selector", '[data-map="grad_input"] canvas')[1]
        for i, j in ((1, 1), (4, 6)):
            _hover(browser, canvas, i, j)
            box = panel.find_element("css selector", "[data-formula]")
            expected = float(entry.grad_input[1, i, j])
            assert float(box.get_attribute("data-value")) == pytest.approx(
                expected, rel=1e-4, abs=1e-8
            )
    browser.find_element("css selector", "#view-forward").click()


def test_the_sandbox_sizes_equal_the_engines(opened: tuple[Any, Trace]) -> None:
    browser, _ = opened
    script = """
        const root = document.querySelector('[data-sandbox]');
        for (const [name, value] of Object.entries(arguments[0])) {
            const input = root.querySelector(`input[name=${name}]`);
            input.value = value;
            input.dispatchEvent(new Event('input'));
        }
        return root.dataset.outputSize;
    """
    for size in (5, 7, 12):
        for kernel in (1, 3, 4):
            for stride in (1, 2, 3):
                for padding, dilation in ((0, 1), (1, 2), (2, 1)):
                    settings = {
                        "size": size,
                        "kernel": kernel,
                        "stride": stride,
                        "padding": padding,
                        "dilation": dilation,
                    }
                    got = int(browser.execute_script(script, settings))
                    assert got == conv_output_size(size, kernel, stride, 2 * padding, dilation), (
                        settings
                    )


def test_a_screenshot(opened: tuple[Any, Trace], tmp_path: Path) -> None:
    browser, result = opened
    browser.find_element("css selector", f'[data-layer="{result.entries[0].name}"]').click()
    shot = tmp_path / "page.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000
