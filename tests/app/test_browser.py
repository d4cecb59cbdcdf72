"""A real browser on the real app: `streamlit run app/main.py` on the small store, driven by
selenium through Debian's chromium, a search performed and a screenshot saved.

chromium's one-shot --screenshot returns before Streamlit renders (it draws over a
websocket), so selenium waits for the elements instead.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
import urllib.request

import pytest

from app import cli
from tests.app.conftest import ARTIFACTS, SYNTHETIC_OBSIDS, free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-quic", "--window-size=1400,3800")


def _chromium() -> tuple[str, str]:
    """Paths of chromium and chromedriver, installing Debian's packages when missing."""
    def found():
        return shutil.which("chromium"), shutil.which("chromedriver")

    if not all(found()) and shutil.which("apt-get"):
        install = ["apt-get", "install", "-y", "chromium", "chromium-driver"]
        try:
            if subprocess.run(install, capture_output=True, timeout=600).returncode != 0:
                # a fresh image has no package lists yet
                subprocess.run(["apt-get", "update"], capture_output=True, timeout=300)
                subprocess.run(install, check=True, capture_output=True, timeout=600)
        except (subprocess.SubprocessError, OSError) as exc:
            pytest.skip(f"chromium/chromium-driver not installable here: {exc}")
    browser, driver = found()
    if not (browser and driver):
        pytest.skip("chromium and chromium-driver are needed (apt-get install -y chromium "
                    "chromium-driver) and could not be installed")
    return browser, driver


@pytest.fixture(scope="module")
def app_server(app_store, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("browser")
    port = free_port()
    args = argparse.Namespace(store=app_store.path, url=None, bundle=None, port=port,
                              address="127.0.0.1")
    env = {**os.environ, "SPECCLIP_SESSIONS": str(tmp_path / "sessions")}
    log = open(tmp_path / "streamlit.log", "wb")
    proc = subprocess.Popen(cli.build_command(args), stdout=log, stderr=subprocess.STDOUT,
                            env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.5)
        else:
            pytest.fail("streamlit did not start")
        if proc.poll() is not None:
            pytest.fail("streamlit exited: " + (tmp_path / "streamlit.log").read_text()[-2000:])
        yield url, tmp_path / "streamlit.log"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser(app_server, tmp_path_factory):
    """A headless chromium at 1400 px wide (the width the tables must fit)."""
    path, driver_path = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = path
    profile = tmp_path_factory.mktemp("chrome-profile")
    for flag in CHROME_FLAGS + (f"--user-data-dir={profile}",):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def _body(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def _wait_text(driver, text: str, name: str, log_path, timeout: float = 120) -> None:
    """Wait until `text` is on the page; on timeout save a screenshot and fail with the page
    text and the server log."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, timeout).until(
            EC.text_to_be_present_in_element((By.TAG_NAME, "body"), text))
    except TimeoutException:
        driver.save_screenshot(str(ARTIFACTS / f"{name}-failure.png"))
        pytest.fail(f"{text!r} did not appear; page text:\n" + _body(driver)[-3000:]
                    + "\nstreamlit log:\n" + log_path.read_text(errors="replace")[-3000:])


def _settle(driver, plots: int = 0) -> None:
    """Let Streamlit finish the run (no 'Running' indicator) and plotly draw."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 120).until(lambda d: len(d.find_elements(
        By.CSS_SELECTOR, ".js-plotly-plot")) >= plots)
    WebDriverWait(driver, 120).until(lambda d: not d.find_elements(
        By.CSS_SELECTOR, '[data-testid="stStatusWidget"]'))
    time.sleep(2.0)


def _shot(driver, name: str) -> None:
    shot = ARTIFACTS / f"{name}.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def _grid_text(driver, first_only: bool = False) -> str:
    """What the dataframes show (all, or the first on the page): glide-data-grid draws on a
    canvas but keeps an accessible table of the visible cells in the DOM."""
    from selenium.webdriver.common.by import By

    grids = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stDataFrame"]')
    cells = [c for g in grids[:1] if first_only for c in g.find_elements(By.CSS_SELECTOR,
                                                                          "td, th")]
    if not first_only:
        cells = [c for g in grids for c in g.find_elements(By.CSS_SELECTOR, "td, th")]
    return " | ".join(c.get_attribute("textContent") for c in cells)


def _real_obsid(app_store) -> str:
    real = [o for o in app_store.obsids if int(o) not in SYNTHETIC_OBSIDS]
    return real[0] if real else "2005"


def _check_search_result(driver, app_store, query_text: str, log_path) -> str:
    _wait_text(driver, query_text, "search", log_path)
    _settle(driver, 3 if app_store.model.startswith("bundle") else 0)
    body = _body(driver)
    assert "Traceback" not in body and "Page not found" not in body
    # grouped per instrument, each with its own scale
    assert "LAMOST LRS: " in body and " nearest neighbours" in body
    if app_store.pair_source_ids:
        assert "Gaia XP: " in body
    assert "cosine in the instrument's " in body     # its spectrum (or encoder) space
    # the query's predicted parameters beside its neighbours' labels
    assert "predicted parameters" in body
    grid = _grid_text(driver)
    assert "query predicted" in grid and "neighbours' median label" in grid
    assert "Teff (K)" in grid
    return body


def test_search_by_obsid(browser, app_server, app_store):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    url, log_path = app_server
    driver = browser
    driver.get(url)
    wait = WebDriverWait(driver, 120)
    box = wait.until(EC.element_to_be_clickable(
        (By.CSS_SELECTOR, 'input[aria-label="LAMOST obsid"]')))
    obsid = _real_obsid(app_store)
    box.send_keys(obsid, Keys.ENTER)
    time.sleep(1.0)            # let the widget value reach the server before the click
    wait.until(EC.element_to_be_clickable(
        (By.XPATH, "//button[.//p[text()='Search']]"))).click()
    _check_search_result(driver, app_store, f"Query: LAMOST LRS obsid {obsid}", log_path)
    # the address bar now links to this search
    assert f"obsid={obsid}" in driver.current_url
    _shot(driver, "search-obsid")


def test_search_by_deep_link(browser, app_server, app_store):
    url, log_path = app_server
    obsid = _real_obsid(app_store)
    browser.get(f"{url}/search?obsid={obsid}")
    _check_search_result(browser, app_store, f"Query: LAMOST LRS obsid {obsid}", log_path)
    _shot(browser, "search-deep-link")


def test_search_by_upload(browser, app_server, app_store, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.indexer.conftest import write_lamost_file

    url, log_path = app_server
    path = write_lamost_file(str(tmp_path / "spec-upload.fits"), 777, teff=5000, seed=3)
    browser.get(url)
    wait = WebDriverWait(browser, 120)
    wait.until(EC.element_to_be_clickable(
        (By.XPATH, "//label[.//p[text()='Upload a file']]"))).click()
    upload = wait.until(EC.presence_of_element_located(
        (By.CSS_SELECTOR, 'input[type="file"]')))
    upload.send_keys(path)
    _wait_text(browser, "spec-upload.fits", "upload", log_path)
    time.sleep(1.0)
    wait.until(EC.element_to_be_clickable(
        (By.XPATH, "//button[.//p[text()='Search']]"))).click()
    _check_search_result(browser, app_store, "Query: LAMOST LRS 777 (uploaded)", log_path)
    _shot(browser, "search-upload")


def test_map_click_opens_a_star(browser, app_server, app_store):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    url, log_path = app_server
    browser.get(f"{url}/map")
    _wait_text(browser, "Map of the shared embedding space", "map", log_path)
    _settle(browser, 1)
    plot = browser.find_element(By.CSS_SELECTOR, ".js-plotly-plot")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", plot)
    time.sleep(1.0)
    # the pixel of the first point, from plotly's own axes (offsets from the plot's corner)
    x, y = browser.execute_script("""
        const gd = arguments[0], t = gd._fullData[0], L = gd._fullLayout;
        const i = Math.floor(t.x.length / 2);
        return [L.xaxis._offset + L.xaxis.l2p(t.x[i]), L.yaxis._offset + L.yaxis.l2p(t.y[i])];
    """, plot)
    size = plot.size
    ActionChains(browser).move_to_element_with_offset(
        plot, int(x - size["width"] / 2), int(y - size["height"] / 2)).pause(0.5).click() \
        .perform()
    _wait_text(browser, "Parameters: model prediction", "map-click", log_path)
    _settle(browser, 2)
    body = _body(browser)
    assert ("obsid" in body or "Gaia DR3" in body) and "Traceback" not in body
    _shot(browser, "map-click")


def test_outlier_mark_stays_listed(browser, app_server, app_store):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    from selenium.webdriver.common.keys import Keys

    url, log_path = app_server
    browser.get(f"{url}/outliers")
    _wait_text(browser, "Mark this candidate", "outliers", log_path)
    _settle(browser)
    wait = WebDriverWait(browser, 120)
    # a short list, so every row is drawn (the grid keeps only visible rows in the DOM)
    box = browser.find_element(By.CSS_SELECTOR, 'input[aria-label="Candidates"]')
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("5", Keys.ENTER)
    time.sleep(1.0)
    _settle(browser)
    listed = _grid_text(browser, first_only=True)
    assert " | 5 | " in listed and " | 6 | " not in listed
    button = wait.until(EC.element_to_be_clickable(
        (By.XPATH, "//button[.//p[text()='Save mark']]")))
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
    button.click()
    _wait_text(browser, "as interesting; saved to", "outliers-mark", log_path)
    _settle(browser)
    assert "1 marked" in _body(browser)
    listed = _grid_text(browser, first_only=True)
    # the marked candidate is still in the list, last, with its mark
    assert " | 5 | " in listed and " | 6 | " not in listed
    rows = listed.split(" | 5 | ", 1)[1]
    assert "interesting" in rows, listed
    browser.execute_script("window.scrollTo(0, 0);")
    _shot(browser, "outliers-mark")
