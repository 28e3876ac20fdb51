"""``rlhf-plug label --web`` in a real headless Chromium (Debian's chromium and chromium-driver, driven by selenium).

What a labeler does: open the private link, rank by typing, arrow keys and
dragging, rate, flag, comment, submit; the file holds it; a reload resumes;
the second annotator sees the shared prompts; markup in an answer is text;
no token, no page. Screenshots of each state go to the test's folder (and to
``$RLHF_PLUG_SCREENSHOTS`` when set, to look at them).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import read_jsonl

pytest.importorskip("starlette", reason="the web extra is not installed")
pytest.importorskip("selenium", reason="selenium is not installed")

from label_web_helpers import XSS, candidate_rows, make_desk, serving, shown_texts  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs headless Chromium: apt-get install -y chromium chromium-driver (bash .ci/run installs them)",
)


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1366,900",
                     "--disable-gpu", "--no-first-run"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


@pytest.fixture
def shot(browser, tmp_path):
    """``shot(name)`` saves a screenshot of the page as it is now."""
    wanted = os.environ.get("RLHF_PLUG_SCREENSHOTS")

    def take(name: str) -> Path:
        path = tmp_path / f"{name}.png"
        assert browser.save_screenshot(str(path))
        if wanted:
            Path(wanted).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(wanted) / path.name)
        return path

    return take


def and_wait_for_the_next_page(browser, act) -> None:
    """Do ``act()`` (a click or a key that sends the form) and wait until the browser shows the page it loads."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    old = browser.find_element(By.TAG_NAME, "html")
    act()
    WebDriverWait(browser, 30).until(expected_conditions.staleness_of(old))


def card_numbers(browser) -> list[int]:
    return [int(c.get_attribute("data-n")) for c in browser.find_elements(By.CSS_SELECTOR, "#cards .card")]


def head(browser, n: int):
    return browser.find_element(By.CSS_SELECTOR, f"#answer-{n} .card-head")


def choose(browser, selector: str) -> None:
    """Click the visible label of a rating button or flag chip (the input itself is hidden under it)."""
    browser.find_element(By.CSS_SELECTOR, selector).find_element(By.XPATH, "..").click()


def test_rank_by_keys_and_dragging_rate_flag_submit_and_resume(browser, shot, tmp_path):
    desk = make_desk(tmp_path, names=["alice", "bob"], overlap=2, rows=candidate_rows(3))
    with serving(desk) as base:
        link = base + f"/label/{desk.team.tokens['alice']}"
        # 1. open alice's link
        browser.get(link)
        assert browser.find_element(By.ID, "annotator").text == "alice"
        assert browser.find_element(By.ID, "prompt").text.endswith("What is 2 + 2?")
        assert "0 of 3 done" in browser.find_element(By.ID, "progress").text
        shot("1-opened")

        # 2a. prompt 1: type the order, rate, flag, comment, submit
        order = browser.find_element(By.ID, "order")
        order.send_keys("3 1")
        assert card_numbers(browser)[:2] == [3, 1]
        assert "2 more to place" in browser.find_element(By.ID, "order-hint").text
        order.send_keys(" 4 2")
        assert card_numbers(browser) == [3, 1, 4, 2]
        choose(browser, "input[name='rating.helpful.3'][value='6']")
        choose(browser, "input[name='rating.harmless.4'][value='1']")
        choose(browser, "input[name='flag.4'][value='harmful']")
        browser.find_element(By.ID, "comment").send_keys("answer 4 is markup")
        shot("2-ranked-by-typing")
        and_wait_for_the_next_page(browser, browser.find_element(By.ID, "submit").click)
        assert browser.find_element(By.ID, "prompt").text.endswith("Question 1: name a colour.")

        # 2b. prompt 2: arrow keys move a card, then drag and drop another
        head(browser, 4).click()
        for _ in range(3):
            browser.switch_to.active_element.send_keys(Keys.ARROW_UP)
        assert card_numbers(browser) == [4, 1, 2, 3]
        assert browser.find_element(By.ID, "order").get_attribute("value") == "4 1 2 3"
        ActionChains(browser).click_and_hold(head(browser, 3)).move_to_element(head(browser, 1)) \
            .move_by_offset(0, -5).release().perform()
        assert card_numbers(browser) == [4, 3, 1, 2]
        assert browser.find_element(By.ID, "order").get_attribute("value") == "4 3 1 2"
        shot("3-ranked-by-keys-and-dragging")
        and_wait_for_the_next_page(browser, lambda: browser.find_element(By.ID, "order").send_keys(Keys.ENTER))  # Enter submits

        # 3. the file holds both rankings, best first, with ratings, flags and comment
        first, second = read_jsonl(tmp_path / "rankings.jsonl")
        shown = shown_texts(desk, 0)
        assert first["completions"] == [shown[2], shown[0], shown[3], shown[1]]
        assert first["ratings"]["helpful"] == [6, None, None, None]
        assert first["ratings"]["harmless"] == [None, None, 1, None]
        assert first["flags"] == [[], [], ["harmful"], []] and first["comment"] == "answer 4 is markup"
        shown = shown_texts(desk, 1)
        assert second["completions"] == [shown[3], shown[2], shown[0], shown[1]] and second["annotator"] == "alice"

        # 4. a reload, and a restarted server, show only what is left
        browser.get(link)
        assert browser.find_element(By.ID, "prompt").text.endswith("Question 2: name a colour.")
        assert "2 of 3 done" in browser.find_element(By.ID, "progress").text
        shot("4-resumed")
    restarted = make_desk(tmp_path, names=["alice", "bob"], overlap=2)
    with serving(restarted) as base:
        browser.get(base + f"/label/{restarted.team.tokens['alice']}")
        assert browser.find_element(By.ID, "prompt").text.endswith("Question 2: name a colour.")
        # 5. bob's link shows the prompts alice ranked too (overlap 2)
        browser.get(base + f"/label/{restarted.team.tokens['bob']}")
        assert browser.find_element(By.ID, "annotator").text == "bob"
        assert browser.find_element(By.ID, "prompt").text.endswith("What is 2 + 2?")
        assert "0 of 3 done" in browser.find_element(By.ID, "progress").text
        assert "alice 2/3" in browser.find_element(By.ID, "team").text
        shot("5-second-annotator")


def test_a_refused_ranking_is_explained_and_what_was_typed_stays(browser, shot, tmp_path):
    desk = make_desk(tmp_path, names=["alice"], overlap=1, rows=candidate_rows(2))
    with serving(desk) as base:
        browser.get(base + f"/label/{desk.team.tokens['alice']}")
        browser.find_element(By.ID, "order").send_keys("2 1")
        choose(browser, "input[name='rating.honest.2'][value='7']")
        and_wait_for_the_next_page(browser, browser.find_element(By.ID, "submit").click)
        error = browser.find_element(By.ID, "error").text
        assert "Not saved: ranking '2 1': got 2 of 4 numbers (missing 3, 4)" in error
        assert browser.find_element(By.ID, "order").get_attribute("value") == "2 1"
        assert browser.find_element(By.CSS_SELECTOR, "input[name='rating.honest.2'][value='7']").is_selected()
        shot("6-refused")
    assert not (tmp_path / "rankings.jsonl").exists()


def test_markup_in_an_answer_is_shown_as_text(browser, shot, tmp_path):
    desk = make_desk(tmp_path, names=["alice"], overlap=1, rows=candidate_rows(1))
    with serving(desk) as base:
        browser.get(base + f"/label/{desk.team.tokens['alice']}")
        n = shown_texts(desk, 0).index(XSS) + 1
        text = browser.find_element(By.CSS_SELECTOR, f"#answer-{n} .answer-text")
        assert text.text == XSS
        assert text.find_elements(By.TAG_NAME, "img") == [] and text.find_elements(By.TAG_NAME, "b") == []
        assert browser.title != "pwned" and "pwned" not in browser.title
        shot("7-markup-as-text")


def test_no_token_no_page(browser, shot, tmp_path):
    desk = make_desk(tmp_path, names=["alice"], overlap=1, rows=candidate_rows(1))
    with serving(desk) as base:
        for path in ("/", "/label/guess", "/label/" + desk.team.tokens["alice"].upper()):
            browser.get(base + path)
            assert "403: no access" in browser.find_element(By.ID, "forbidden").text
            assert "What is 2 + 2?" not in browser.page_source
        shot("8-no-token")
