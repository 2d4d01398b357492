#!/usr/bin/env python3
"""Drive mailnotary's web page in a real headless Chromium, as a compliance
officer would, through Selenium's WebDriver client and Debian's
chromedriver.

    browser.py --base http://127.0.0.1:PORT --token TOKEN --subject TEXT
               --verify FILE --downloads DIR --screenshot FILE.png

Signs in with the token, searches by subject, opens the first thread,
switches the language to Chinese (and checks that it is remembered), saves
a screenshot of the thread view, downloads the evidence bundle, then drops
FILE onto the verify page (a real drop event carrying the file) and submits
it. Prints one JSON object with what it saw. Needs the Debian packages
chromium and chromium-driver and the Python package selenium.
"""

import argparse
import base64
import json
import os
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select


def wait_for(predicate, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit("timed out waiting")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--subject", required=True)
    ap.add_argument("--verify", required=True)
    ap.add_argument("--downloads", required=True)
    ap.add_argument("--screenshot", required=True)
    args = ap.parse_args()

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1280,1600", "--lang=en-US"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {
        "download.default_directory": args.downloads,
        "download.prompt_for_download": False,
        "intl.accept_languages": "en-US,en",
    })
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    seen = {}
    try:
        driver.execute_cdp_cmd("Page.setDownloadBehavior",
                               {"behavior": "allow", "downloadPath": args.downloads})
        # Not signed in: the sign-in form.
        driver.get(args.base + "/ui")
        driver.find_element(By.ID, "token").send_keys(args.token)
        driver.find_element(By.ID, "login").click()

        # Search by subject.
        Select(wait_for(lambda: driver.find_elements(By.ID, "kind"))[0]).select_by_value("subject")
        driver.find_element(By.ID, "q").send_keys(args.subject)
        driver.find_element(By.ID, "go").click()
        rows = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#results tr"))
        seen["result_rows"] = len(rows) - 1
        seen["english"] = "Search" in driver.find_element(By.TAG_NAME, "header").text

        # Open the thread.
        driver.find_elements(By.CSS_SELECTOR, "a.thread-link")[0].click()
        wait_for(lambda: driver.find_elements(By.ID, "timeline"))
        seen["timeline_messages"] = len(driver.find_elements(By.CSS_SELECTOR, "#timeline li.message"))
        seen["timeline_gaps"] = len(driver.find_elements(By.CSS_SELECTOR, "#timeline li.gap"))
        seen["statuses"] = sorted({e.text for e in driver.find_elements(By.CSS_SELECTOR, "#timeline .status")})
        seen["receipt_links"] = len(driver.find_elements(By.CSS_SELECTOR, "a.receipt-link"))
        thread_url = driver.current_url

        # Switch to Chinese: the same page comes back in Chinese, and stays.
        driver.find_element(By.ID, "lang").click()
        wait_for(lambda: "邮件存证" in driver.find_element(By.TAG_NAME, "header").text)
        seen["back_on_thread"] = driver.current_url == thread_url
        driver.get(args.base + "/ui")
        seen["chinese_remembered"] = "查询" in driver.find_element(By.TAG_NAME, "h1").text
        driver.get(thread_url)
        wait_for(lambda: driver.find_elements(By.ID, "timeline"))
        seen["chinese_status"] = sorted({e.text for e in driver.find_elements(By.CSS_SELECTOR, "#timeline .status")})
        driver.save_screenshot(args.screenshot)

        # Download the bundle.
        driver.find_element(By.ID, "bundle").click()
        def finished():
            names = os.listdir(args.downloads)
            done = [n for n in names if n.endswith(".zip")]
            partial = [n for n in names if n.endswith(".crdownload")]
            return done if done and not partial else None
        seen["downloads"] = wait_for(finished, 60)

        # Verify: drop the file onto the drop zone, then submit.
        driver.get(args.base + "/ui/verify")
        with open(args.verify, "rb") as f:
            content = base64.b64encode(f.read()).decode()
        driver.execute_script("""
            const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));
            const file = new File([bytes], arguments[1], {type: 'message/rfc822'});
            const dt = new DataTransfer();
            dt.items.add(file);
            const zone = document.getElementById('drop');
            zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true, cancelable: true}));
            zone.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
        """, content, os.path.basename(args.verify))
        seen["dropped"] = driver.execute_script(
            "return document.getElementById('file').files.length")
        driver.find_element(By.ID, "check").click()
        outcome = wait_for(lambda: driver.find_elements(By.ID, "outcome"))[0]
        seen["verify_outcome"] = outcome.text
        seen["verify_class"] = outcome.get_attribute("class")
    finally:
        driver.quit()
    json.dump(seen, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
