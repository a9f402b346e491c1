"""End to end: the real server (`streamlit run app.py`) driven by headless Chromium.

Each page is opened first on a fresh server (a deep link must go through app.py's navigation);
then two browser tabs analyse at once (an image and a video), both get a verdict and both land in
the history; the image's Provenance tab shows its Content Credentials; then every page is opened
and photographed: into a scratch folder, or into
`$DEEPFAKE_SCREENSHOTS_DIR` (`make screenshots` sets it to docs/screenshots for the README).
Waits are explicit (an element appears, the app stops running), never sleeps.

Needs Debian's `chromium` and `chromium-driver` (`make browser`) and Selenium. Missing: the test
fails under CI and is skipped elsewhere.
"""

from __future__ import annotations

import os
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pipeline.app.store import Store
from pipeline.config import DATA_HOME_ENV, REPO_ROOT

if TYPE_CHECKING:
    from dashboard_fixtures import Media

pytest_plugins = ["dashboard_fixtures"]  # session fixtures: media, generated_image
pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS_ENV = "DEEPFAKE_SCREENSHOTS_DIR"
NAVIGATION = ["Analyze", "Compare models", "History", "Model card"]
SERVER_START_S = 90.0
ANALYSIS_S = 300.0  # the first analysis also loads the models
PAGE_S = 60.0
WINDOW = (1400, 1600)
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # A tab in the background keeps running its analysis and its websocket at full speed.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
)


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -r requirements-dev.txt)")
    if missing:
        message = f"browser test needs {', '.join(missing)}; run `make browser`"
        if _on_ci():
            pytest.fail(f"CI is set and the {message}", pytrace=False)
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_output(process: subprocess.Popen[bytes], marker: bytes, deadline_s: float) -> bytes:
    """What the server printed until `marker` (it is ready), or fail at its exit or the deadline."""
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    seen = b""
    deadline = time.monotonic() + deadline_s
    try:
        while marker not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(timeout=left):
                pytest.fail(f"the server did not start in {deadline_s:.0f} s:\n{seen.decode(errors='replace')}")
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                pytest.fail(f"the server exited with {process.wait()}:\n{seen.decode(errors='replace')}")
            seen += chunk
    finally:
        selector.close()
    return seen


@pytest.fixture
def server(tmp_path: Path, models_dir: Path) -> Iterator[tuple[str, Path]]:
    """The dashboard served on a free port with its history in a fresh folder: (URL, folder)."""
    _require_browser()
    home = tmp_path / "history"
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
            "--server.fileWatcherType",
            "none",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, DATA_HOME_ENV: str(home), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_output(process, f":{port}".encode(), SERVER_START_S)
        yield f"http://127.0.0.1:{port}", home
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def browser(tmp_path: Path):
    """Headless Chromium with a fresh profile."""
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, seconds: float):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, poll_frequency=0.25)


_DRAWN = """
return document.querySelectorAll('[data-testid="stStatusWidget"], [data-testid="stSkeleton"]').length === 0
    && Array.from(document.images).every(image => image.complete && image.naturalWidth > 0);
"""


def _drawn(driver, seconds: float = PAGE_S) -> None:
    """Wait until the app has finished its script run and the browser has drawn the result:
    no 'running' indicator, no placeholder, every picture loaded."""
    _wait(driver, seconds).until(lambda d: d.execute_script(_DRAWN))


def _text(driver, text: str, seconds: float = PAGE_S):
    """Wait for an element whose own text contains `text`."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    return _wait(driver, seconds).until(
        ec.visibility_of_element_located((By.XPATH, f"//*[contains(text(), '{text}')]"))
    )


def _start_analysis(driver, url: str, media_file: Path) -> None:
    """Open the Analyze page, upload a file and press Analyze."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    driver.get(url)
    upload = _wait(driver, ANALYSIS_S).until(ec.presence_of_element_located((By.CSS_SELECTOR, "input[type='file']")))
    upload.send_keys(str(media_file))
    _text(driver, media_file.name)  # listed under the uploader
    analyze = (By.XPATH, "//button[normalize-space()='Analyze']")
    _wait(driver, PAGE_S).until(ec.element_to_be_clickable(analyze)).click()


def _open_page(driver, title: str, ready_text: str) -> None:
    """Click a page in the sidebar and wait for it to be drawn."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.XPATH, f"//a[@data-testid='stSidebarNavLink'][.//span[normalize-space()='{title}']]").click()
    _wait(driver, PAGE_S).until(lambda d: d.find_elements(By.XPATH, f"//h1[normalize-space()='{title}']"))
    _text(driver, ready_text)
    _drawn(driver)


def _navigation(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    links = driver.find_elements(By.CSS_SELECTOR, "[data-testid='stSidebarNavLink']")
    return [link.text.splitlines()[-1] for link in links]


@pytest.mark.parametrize(
    ("path", "title", "ready_text"),
    [
        ("", "Analyze", "Images or videos"),
        ("compare", "Compare models", "No analysis yet"),
        ("history", "History", "No analysis yet"),
        ("model_card", "Model card", "Read from"),
    ],
)
def test_a_fresh_server_opens_each_page_first_through_the_apps_navigation(
    server: tuple[str, Path], browser, path: str, title: str, ready_text: str
) -> None:
    """Streamlit starts a server with a pages/ folder in its old multipage mode; the first
    request of all, a deep link, must still show the app's own navigation and page."""
    from selenium.webdriver.common.by import By

    url, _ = server
    browser.get(f"{url}/{path}")
    _text(browser, ready_text)
    _drawn(browser)
    _wait(browser, PAGE_S).until(lambda d: _navigation(d) == NAVIGATION)
    assert browser.find_elements(By.XPATH, f"//h1[normalize-space()='{title}']")
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")


def _show_provenance(driver) -> None:
    """Open the result's Provenance tab and bring the verdict and the tab into view."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.XPATH, "//*[@role='tab'][normalize-space()='Provenance']").click()
    _text(driver, "Content Credentials (C2PA)")
    verdict = driver.find_element(By.XPATH, "//h3[starts-with(normalize-space(), 'Verdict:')]")
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", verdict)
    _drawn(driver)


def test_two_tabs_analyse_at_once_and_every_page_opens(
    server: tuple[str, Path], browser, media: Media, generated_image: Path, tmp_path: Path
) -> None:
    """The image is the shared photo with Content Credentials saying AI-generated (signed in the
    test with a test certificate), so its Provenance tab has something to show."""
    from selenium.webdriver.common.by import By

    url, home = server
    screenshots = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path / "screenshots")
    browser.get(f"{url}/history")
    _text(browser, "No analysis yet")
    _drawn(browser)
    assert _navigation(browser) == NAVIGATION

    image_tab = browser.current_window_handle
    _start_analysis(browser, url, generated_image)
    browser.switch_to.new_window("tab")
    video_tab = browser.current_window_handle
    _start_analysis(browser, url, media.video)  # while the image tab is still analysing

    # The video's tab last: it is the newest result, which the other pages open first.
    for tab in (image_tab, video_tab):
        browser.switch_to.window(tab)
        _text(browser, "Verdict:", ANALYSIS_S)
        _drawn(browser)
        assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
        # The page took the upload while the models loaded; with a verdict shown, no note says they still do.
        assert not browser.find_elements(By.XPATH, "//*[contains(text(), 'loading in the background')]")
    assert {s.file_name for s in Store(home).summaries()} == {media.video.name, generated_image.name}

    screenshots.mkdir(parents=True, exist_ok=True)
    _wait(browser, PAGE_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot"))
    browser.save_screenshot(str(screenshots / "analyze.png"))
    browser.switch_to.window(image_tab)
    _text(browser, "AI-generated according to Content Credentials")  # beside the verdict
    _show_provenance(browser)
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
    browser.save_screenshot(str(screenshots / "provenance.png"))
    browser.switch_to.window(video_tab)
    _open_page(browser, "Compare models", "Inference time")
    browser.save_screenshot(str(screenshots / "compare.png"))
    _open_page(browser, "History", "Verdict:")
    browser.save_screenshot(str(screenshots / "history.png"))
    _open_page(browser, "Model card", "Read from")
    browser.save_screenshot(str(screenshots / "model_card.png"))
    for name in ("analyze", "provenance", "compare", "history", "model_card"):
        assert (screenshots / f"{name}.png").read_bytes().startswith(b"\x89PNG")
