"""report.html rendered in a real headless browser (Chromium through Playwright): the page
loads from disk with no network, shows every figure, its tables sort on a click, nothing
overflows the window. Needs the ``report-test`` extra and a Chromium; skips, saying which is
missing, without them. Marked ``slow``: run with ``pytest -m slow tests/test_report_browser.py``.
The first test needs no browser."""

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from rnnlab import jobs, report
from rnnlab.config import compose
from rnnlab.loop import execute

TINY = ["cell.hidden_size=8", "task.length=2", "task.copy_length=3", "train.steps=4",
        "train.log_every=2", "train.num_seeds=2", "train.batch_size=4",
        "train.eval_batch_size=8", "gradients.every=2", "gradients.batch_size=4",
        "logger.progress=false", "logger.wandb.mode=disabled", "logger.plots=false"]
FORECAST = ["task=forecast", "task.dataset=sine", "task.lookback=8", "cell.hidden_size=4",
            "train.steps=4", "train.log_every=2", "train.num_seeds=2", "train.batch_size=8",
            "train.eval_batch_size=8", "gradients.every=2", "gradients.batch_size=4",
            "logger.progress=false", "logger.wandb.mode=disabled", "logger.plots=false"]
VIEWPORT = {"width": 1280, "height": 900}
# the sweep it renders trains four tiny runs (over a minute on 2 shared CPU cores)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def html_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("html_sweep")
    for i, (cell, length) in enumerate([("lstm", 2), ("rnn", 4)]):
        execute(compose([f"cell={cell}", *TINY, f"task.length={length}"]),
                root / f"{i}_copy_{cell}")
    execute(compose(["cell=gru", *FORECAST]), root / "2_forecast_gru")
    with pytest.raises(ValueError) as refused:  # refused before anything is written ...
        execute(compose(["cell=gru", *TINY, "task.length=0"]), root / "3_copy_gru")
    jobs.record_failed_job(root / "3_copy_gru", refused.value)  # ... then recorded, as a sweep does
    written = report.make_report(root, root / "report", html=True)
    return written


def test_the_page_is_self_contained(html_report):
    page = html_report["html"].read_text()
    md = html_report["report"].read_text()
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(figures) >= 4  # gradient flow, metric vs T, forecast, its gradient flow
    sources = re.findall(r"<img[^>]* src='([^']+)'", page)
    assert len(sources) == len(figures)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"(src|href)=['\"](https?:|//)", page)  # nothing to fetch
    assert "default-src 'none'" in page  # and the browser may fetch nothing
    separators = [line for line in md.splitlines() if re.fullmatch(r"\|( --- \|)+", line)]
    assert page.count("<table") == len(separators) >= 3  # one per markdown table


# ---- the browser --------------------------------------------------------------------------
def _chromium() -> str | None:
    for name in (os.environ.get("RNNLAB_CHROMIUM"), "chromium", "chromium-browser",
                 "google-chrome", "google-chrome-stable"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is not installed: pip install '.[report-test]'")
    executable = _chromium()
    with sync_api.sync_playwright() as p:
        if executable is None and not Path(p.chromium.executable_path).exists():
            pytest.skip("no Chromium found: apt-get install chromium (or playwright install "
                        "chromium, or set RNNLAB_CHROMIUM)")
        b = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser, html_report):
    pg = browser.new_page(viewport=VIEWPORT)
    requests, errors = [], []
    pg.on("request", lambda r: requests.append(r.url))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(html_report["html"].as_uri())
    pg.wait_for_function("document.body.dataset.ready === '1'")
    pg.requests, pg.errors = requests, errors
    yield pg
    pg.close()


def test_it_loads_from_disk_with_no_request_and_no_error(page, html_report):
    assert page.requests == [html_report["html"].as_uri()]
    assert page.errors == []


def test_every_figure_is_shown_within_the_window(page, html_report):
    md = html_report["report"].read_text()
    images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth,"
                           " i.getBoundingClientRect().width, i.alt])")
    assert len(images) == len(re.findall(r"!\[", md))
    assert all(done and natural > 100 and 0 < shown <= VIEWPORT["width"]
               for done, natural, shown, _ in images), images
    assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"]


def test_the_screenshot_shows_the_report(page, tmp_path):
    from matplotlib.image import imread

    path = tmp_path / "report.png"
    page.screenshot(path=str(path), full_page=True)
    rgb = imread(path)[..., :3]
    height, width = rgb.shape[:2]
    assert width == VIEWPORT["width"] and height > VIEWPORT["height"]  # a long page
    inked = (rgb.mean(axis=-1) < 0.9).mean()
    assert 0.02 < inked < 0.6, inked  # text and figures, not a blank or black page
    top = rgb[: VIEWPORT["height"]]
    assert np.std(top) > 0.05


def test_tables_hold_the_sweep_and_the_failed_run(page):
    headings = page.eval_on_selector_all("h2", "hs => hs.map(h => h.textContent)")
    assert headings[:2] == ["copy", "forecast: sine"] and headings[-1] == "Failed runs"
    failed = page.inner_text("h2:has-text('Failed runs') + ul")
    assert "length must be an int >= 1; got 0" in failed
    header = page.eval_on_selector_all("table >> nth=0 >> thead th",
                                       "ths => ths.map(t => t.textContent)")
    assert header[:4] == ["cell", "T", "seeds", "params"]
    baseline = page.inner_text("table >> nth=0 >> tfoot")
    assert baseline.startswith("baseline")


def _column(page, table: int, col: int) -> list[str]:
    return page.eval_on_selector_all(
        f"table >> nth={table} >> tbody tr",
        f"rows => rows.map(r => r.cells[{col}].textContent)")


def test_a_click_on_a_header_sorts_the_table(page):
    params = page.locator("table >> nth=0 >> thead th", has_text="params")
    params.click()
    values = [int(v.replace(",", "")) for v in _column(page, 0, 3)]
    assert values == sorted(values) and len(set(values)) > 1
    assert params.get_attribute("aria-sort") == "ascending"
    params.click()
    values = [int(v.replace(",", "")) for v in _column(page, 0, 3)]
    assert values == sorted(values, reverse=True)
    assert params.get_attribute("aria-sort") == "descending"
    # the baseline row stays below the runs, whatever the order
    assert page.inner_text("table >> nth=0 >> tfoot").startswith("baseline")
