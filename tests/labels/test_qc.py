"""The QC sheet opened in headless Chromium: every picture loads and each category shows its grids."""

import os
import shutil

import pytest

# CI installs Debian's chromium and chromium-driver (.ci/run) and sets this, so there the test cannot skip.
REQUIRED = os.environ.get("EVTP_REQUIRE_BROWSER") == "1"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM and DRIVER):
        if REQUIRED:
            pytest.fail("chromium and chromedriver are required here (apt-get install chromium chromium-driver)")
        pytest.skip("no chromium / chromedriver on this machine")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    flags += [f"--user-data-dir={tmp_path_factory.mktemp('chromium')}", "--window-size=1200,900"]
    for flag in flags:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def test_the_qc_sheet_shows_its_grids_with_every_picture_loaded(run, exported, browser):
    out = exported("coco", "--min-score", "0.75", "--qc")
    page = out.parent / "qc" / "index.html"
    browser.get(page.as_uri())
    browser.execute_script("return document.readyState")  # get() returns once the page has loaded
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])"
    )
    assert images and all(loaded for _, loaded in images), [src for src, ok in images if not ok]
    sections = browser.execute_script(
        "return Array.from(document.querySelectorAll('section.category')).map(s => ["
        "s.querySelector('h2').textContent, s.querySelectorAll('.grid.accepted figure').length, "
        "s.querySelectorAll('.grid.rejected figure').length, s.querySelectorAll('img.hist').length])"
    )
    from pipeline.results import load

    predictions = load(run, "predictions")
    assert sorted(s[0] for s in sections) == sorted(predictions.expression_text.unique())
    for name, accepted, rejected, histograms in sections:
        mine = predictions[predictions.expression_text == name]
        passing = int(((mine.score >= 0.75) & (mine.area > 0)).sum())
        assert (accepted, rejected, histograms) == (min(passing, 12), min(len(mine) - passing, 12), 1), name
    # Rejected masks say why, and a grid is sorted by score.
    captions = browser.execute_script(
        "return Array.from(document.querySelectorAll('.grid.rejected figcaption')).map(c => c.textContent)"
    )
    assert captions and all("rejected: score" in c or "rejected: area" in c for c in captions)
    scores = [float(c.split("score ")[1].split(",")[0]) for c in captions[: min(len(captions), 12)]]
    assert scores[:1] and scores[0] >= scores[-1]
