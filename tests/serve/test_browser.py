"""End to end in a real browser: headless Chromium opens the page, uploads a phantom slice, and the
probabilities and the Grad-CAM overlay appear. Skips (saying why) without Selenium, Chromium or its driver;
`.ci/run` installs them where it can."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

selenium = pytest.importorskip("selenium", reason="selenium is not installed (dev extra: pip install -e '.[dev]')")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

LEAD_SCREENSHOT = Path("/tmp/kidneyct-screenshot.png")
TOKEN = "browser-test-token-0123456789"


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser():
    binary = os.environ.get("KIDNEYCT_CHROMIUM") or _find("chromium", "chromium-browser", "google-chrome")
    driver_path = os.environ.get("KIDNEYCT_CHROMEDRIVER") or _find("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip("no headless browser: install Debian's `chromium` and `chromium-driver` "
                    f"(found browser={binary}, driver={driver_path})")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1200,900", "--no-proxy-server"):
        options.add_argument(argument)
    try:  # an explicit driver path: Selenium Manager would try to download one
        driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    except Exception as error:  # a driver that does not match the browser, no display libraries...
        pytest.skip(f"headless Chromium did not start: {type(error).__name__}: {str(error).splitlines()[0]}")
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(trained_run):
    """The real app on a free loopback port, uvicorn in a thread, with a token (the page reads it from its
    address, as a user opens http://server:port/#token=...)."""
    import uvicorn

    from kidneyct.serve import ServeSettings, create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(trained_run.best_checkpoint, ServeSettings(token=TOKEN)), host="127.0.0.1",
                            port=port, log_level="warning")
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uvicorn_server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    uvicorn_server.should_exit = True
    thread.join(10)


def test_page_uploads_a_slice_and_shows_probabilities_and_heatmap(browser, server, phantom_png, tmp_path):
    image = next((phantom_png / "Tumor").glob("*[0-9]).png"))
    browser.get(f"{server}/#token={TOKEN}")
    assert "not a medical device" in browser.find_element(By.ID, "disclaimer").text
    WebDriverWait(browser, 20).until(lambda d: "seed-cnn" in d.find_element(By.ID, "model-line").text)
    browser.find_element(By.ID, "file").send_keys(str(image))
    result = browser.find_element(By.ID, "result")
    WebDriverWait(browser, 60).until(lambda d: result.get_attribute("data-state") in ("done", "error"))
    assert result.get_attribute("data-state") == "done", browser.find_element(By.ID, "error").text

    bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
    assert [bar.get_attribute("data-class") for bar in bars] == ["Tumor", "Normal"]
    shares = [float(bar.find_element(By.CLASS_NAME, "value").text.rstrip("%")) for bar in bars]
    assert sum(shares) == pytest.approx(100, abs=0.2)
    assert browser.find_element(By.ID, "predicted").text in ("Tumor", "Normal", "no call (out of scope)")
    overlay = browser.find_element(By.ID, "overlay")
    size = browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", overlay)
    assert size == [256, 256] and overlay.is_displayed()
    assert browser.execute_script("return arguments[0].naturalWidth", browser.find_element(By.ID, "preview")) > 0

    shot = tmp_path / "page-with-heatmap.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 0
    try:
        shutil.copyfile(shot, LEAD_SCREENSHOT)
    except OSError:
        pass  # a convenience copy only

    browser.find_element(By.ID, "heatmap-toggle").click()
    assert not overlay.is_displayed()  # the toggle hides the heatmap and shows the plain model input
    assert browser.find_element(By.ID, "model-input").is_displayed()
    browser.save_screenshot(str(tmp_path / "page-without-heatmap.png"))


def test_page_shows_a_clear_error_for_a_bad_file(browser, server, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image" * 10)
    browser.get(f"{server}/#token={TOKEN}")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "error").is_displayed())
    message = browser.find_element(By.ID, "error").text
    assert "422" in message and "broken.png: not a readable image" in message
    assert browser.find_element(By.ID, "result").get_attribute("data-state") == "error"


def test_page_without_the_token_is_refused_by_the_api(browser, server, phantom_png):
    browser.get(server + "/")  # the page and its files are public; the API is not
    browser.find_element(By.ID, "file").send_keys(str(next((phantom_png / "Tumor").glob("*[0-9]).png"))))
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "error").is_displayed())
    assert "401" in browser.find_element(By.ID, "error").text
    assert "Model card unavailable" in browser.find_element(By.ID, "model-line").text


def test_openapi_docs_render_offline(browser, server):
    browser.get(server + "/docs")
    WebDriverWait(browser, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= 4)
    paths = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/predict", "/explain", "/health", "/model"} <= paths
