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


@pytest.fixture
def app_server(app_store, tmp_path):
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
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_search_in_a_real_browser(app_server, app_store, tmp_path):
    browser, driver_path = _chromium()
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for flag in CHROME_FLAGS + (f"--user-data-dir={tmp_path / 'chrome-profile'}",):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        driver.get(app_server)
        wait = WebDriverWait(driver, 90)
        box = wait.until(EC.element_to_be_clickable(
            (By.CSS_SELECTOR, 'input[aria-label="LAMOST obsid"]')))
        # a real LAMOST star that Gaia XP also observed when the shared data is there
        real = [o for o in app_store.obsids if int(o) not in SYNTHETIC_OBSIDS]
        obsid = real[0] if real else "2005"
        box.send_keys(obsid, Keys.ENTER)
        time.sleep(1.0)            # let the widget value reach the server before the click
        button = wait.until(EC.element_to_be_clickable(
            (By.XPATH, "//button[.//p[text()='Search']]")))
        button.click()
        wait.until(EC.text_to_be_present_in_element(
            (By.TAG_NAME, "body"), f"neighbours of LAMOST LRS obsid {obsid}"))
        if app_store.model.startswith("bundle"):
            # the app loads the same shipped bundle: the grid of spectra must be drawn
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")) >= 3)
            time.sleep(2.0)        # plotly draws its traces after the element appears
        else:
            # no bundle yet: the table renders and the missing model is reported once
            wait.until(EC.text_to_be_present_in_element(
                (By.TAG_NAME, "body"), "cannot be drawn without the model"))
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "Spectrum search" in body and f"obsid {obsid}" in body
        assert "Traceback" not in body
        shot = ARTIFACTS / "search.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    except TimeoutException:
        driver.save_screenshot(str(ARTIFACTS / "search-failure.png"))
        log = (tmp_path / "streamlit.log").read_text(errors="replace")[-3000:]
        pytest.fail("the app did not render the search in time; page text:\n"
                    + driver.find_element(By.TAG_NAME, "body").text[-3000:]
                    + "\nstreamlit log:\n" + log)
    finally:
        driver.quit()
