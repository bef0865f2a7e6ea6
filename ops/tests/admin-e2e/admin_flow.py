"""The admin page's operator flow in headless Chromium, checked against the service's API.

Run by ops/tests/admin-e2e.sh, which starts the service. Every check prints a line; the first
failure ends the run with a non-zero status. What is watched the whole time: every request the
browser makes (none may leave the origin), the console (no error but the expected refusals of a
signed-out page), uncaught exceptions, and CSP violations.
"""

import argparse
import json
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect, sync_playwright

WIDE = {"width": 1280, "height": 900}
NARROW = {"width": 390, "height": 844}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# What a signed-out page is expected to be told: Chromium logs every 401 answer as an error.
EXPECTED_REFUSAL = re.compile(r"^Failed to load resource: the server responded with a status of 401")
CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI);
  console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI);
});
"""
LABELS_AND_NAMES = """
() => {
  const problems = [];
  for (const control of document.querySelectorAll('input, select, textarea')) {
    if (control.type === 'hidden') continue;
    const labelled = control.labels.length > 0 || control.getAttribute('aria-label') || control.getAttribute('aria-labelledby');
    if (!labelled) problems.push(`unlabelled ${control.tagName.toLowerCase()} ${control.name || control.id}`);
  }
  for (const button of document.querySelectorAll('button')) {
    if (!(button.textContent.trim() || button.getAttribute('aria-label'))) problems.push('unnamed button');
  }
  for (const link of document.querySelectorAll('a')) {
    if (!link.textContent.trim()) problems.push('unnamed link');
  }
  if (!document.querySelector('main')) problems.push('no main landmark');
  if (!document.querySelector('[aria-live]')) problems.push('no live region');
  return problems;
}
"""


class Failure(Exception):
    pass


def ok(what):
    print(f"ok   {what}", flush=True)


def check(condition, what):
    if not condition:
        raise Failure(what)
    ok(what)


class Api:
    """The service's API, called directly to check what the page did."""

    def __init__(self, url, key):
        self.url = url
        self.key = key

    def call(self, method, path, key=None, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {key or self.key}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, None

    def messages(self, chat_id):
        status, page = self.call("GET", f"/api/chats/{chat_id}/messages?limit=200")
        if status != 200:
            raise Failure(f"listing the messages of {chat_id}: {status}")
        return page["items"]


class Browser:
    """One page with its watchers."""

    def __init__(self, context, origin):
        self.context = context
        self.origin = origin
        self.foreign = []
        self.console_errors = []
        self.refusals = 0
        self.exceptions = []
        self.sends = []
        context.add_init_script(CSP_WATCH)
        context.on("request", self.saw_request)
        self.page = context.pages[0] if context.pages else context.new_page()
        self.page.on("console", self.saw_console)
        self.page.on("pageerror", lambda error: self.exceptions.append(str(error)))
        self.page.set_viewport_size(WIDE)

    def saw_request(self, request):
        parts = urlsplit(request.url)
        if parts.scheme in ("data", "blob", "about"):
            return
        if f"{parts.scheme}://{parts.netloc}" != self.origin:
            self.foreign.append(request.url)
        if parts.path.endswith("/send") and request.method == "POST":
            self.sends.append(request.headers.get("idempotency-key"))

    def saw_console(self, message):
        if message.type != "error":
            return
        if EXPECTED_REFUSAL.match(message.text):
            self.refusals += 1
        else:
            self.console_errors.append(message.text)

    def csp_violations(self):
        return self.page.evaluate("window.__cspViolations || []")


def screenshots(browser, directory, name, dark=False):
    page = browser.page
    schemes = ["light", "dark"] if dark else ["light"]
    for scheme in schemes:
        page.emulate_media(color_scheme=scheme)
        for label, size in (("1280", WIDE), ("390", NARROW)):
            page.set_viewport_size(size)
            suffix = "" if scheme == "light" else "-dark"
            page.screenshot(path=str(directory / f"{name}-{label}{suffix}.png"), full_page=True)
    page.emulate_media(color_scheme="light")
    page.set_viewport_size(NARROW)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    page.set_viewport_size(WIDE)
    check(overflow <= 1, f"screenshots of {name}{' (light and dark)' if dark else ''}; "
          f"it fits 390 px without sideways scrolling (overflow {overflow} px)")


def labelled(browser, name):
    problems = browser.page.evaluate(LABELS_AND_NAMES)
    check(problems == [], f"{name}: every input labelled, every button and link named {problems}")


def tab_to(page, selector, limit=60):
    """Presses Tab until the element matching `selector` has the focus."""
    for _ in range(limit):
        if page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector):
            return True
        page.keyboard.press("Tab")
    return False


def run(args):
    origin = args.url.rstrip("/")
    admin_key = Path(args.key_file).read_text().strip()
    api = Api(origin, admin_key)
    shots = Path(args.screenshots)
    shots.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            args.profile,
            executable_path=args.chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            accept_downloads=True,
        )
        context.set_default_timeout(15000)
        browser = Browser(context, origin)
        page = browser.page
        try:
            flow(browser, page, api, origin, shots)
        finally:
            context.close()


def flow(browser, page, api, origin, shots):
    # Signed out: the login form, and nothing but it.
    page.goto(f"{origin}/admin/")
    key_input = page.get_by_label("API key", exact=True)
    expect(key_input).to_be_visible()
    expect(page.locator("#session")).to_be_hidden()
    expect(page.locator("#sections")).to_be_hidden()
    check("null" not in page.locator("#main").inner_text(), "signed out: nothing but the sign-in form")
    ok("signed out, the page asks for an API key")
    labelled(browser, "login")
    screenshots(browser, shots, "login", dark=True)

    # A wrong key is refused.
    key_input.fill("sk_not_a_key")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("not accepted")
    ok("a wrong key is refused")

    # Keyboard only, from a fresh load: the key box has the focus; type, Tab to the button, Enter.
    page.goto(f"{origin}/admin/")
    expect(key_input).to_be_focused()
    ok("keyboard: the key box has the focus on arrival")
    page.keyboard.type(api.key)
    check(tab_to(page, "button[type=submit]"), "keyboard: Tab reaches Sign in")
    page.keyboard.press("Enter")
    expect(page.locator("#session-role")).to_have_text("admin")
    ok("keyboard: signed in, the role shown is admin")

    # Overview: the cards and the live feed.
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    expect(page.locator(".card")).to_have_count(8)
    expect(page.get_by_role("heading", name="Live events")).to_be_visible()
    ok("overview: eight health cards and the live feed")
    labelled(browser, "overview")

    # Chats: create one.
    page.get_by_role("link", name="Chats", exact=True).click()
    page.get_by_label("Title", exact=True).fill("Night shift")
    page.get_by_label("Chat id (optional)", exact=True).fill("e2e-night")
    page.get_by_role("button", name="Create chat", exact=True).click()
    expect(page.get_by_role("heading", name="Night shift", level=1)).to_be_visible()
    ok("chat e2e-night created, its view open")
    labelled(browser, "chat view")

    # The live feed on the overview saw the chat's messages; checked after the sends below.
    # Double click: one message stored.
    page.get_by_label("Message", exact=True).fill("double click")
    page.get_by_role("button", name="Send", exact=True).dblclick()
    expect(page.locator("#send-result")).to_contain_text("no agent reply")
    operator = [m for m in api.messages("e2e-night") if m["role"] == "operator" and m["text"] == "double click"]
    check(len(operator) == 1, f"double click: exactly one operator message stored ({len(operator)})")
    degraded = page.locator(".message.degraded")
    expect(degraded).to_have_count(1)
    expect(degraded).to_contain_text("llm_unconfigured")
    ok("the degraded reply is shown with its reason (llm_unconfigured)")
    expect(page.locator("#announcer")).to_contain_text("no agent reply")
    ok("the live region announced the send result")

    # The answer lost on the way back: the retry carries the same key and stores nothing new.
    browser.sends.clear()

    def lose_answer(route):
        route.fetch()
        route.abort()

    page.route("**/api/chats/e2e-night/send", lose_answer, times=1)
    page.get_by_label("Message", exact=True).fill("answer lost")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator("#send-result")).to_contain_text("Sending again is safe")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator("#send-result")).to_contain_text("no agent reply")
    check(len(browser.sends) == 2 and browser.sends[0] == browser.sends[1] and browser.sends[0],
          f"retry after a lost answer reuses the Idempotency-Key {browser.sends}")
    operator = [m for m in api.messages("e2e-night") if m["role"] == "operator" and m["text"] == "answer lost"]
    check(len(operator) == 1, f"retry after a lost answer: exactly one operator message stored ({len(operator)})")
    # The page shows the network error it saw; that is an expected console line, not a defect.
    browser.console_errors = [e for e in browser.console_errors if "ERR_FAILED" not in e]

    # Keyboard only, from wherever the focus is: Tab to the composer, type, Tab to Send, Enter.
    check(tab_to(page, "textarea[name=text]"), "keyboard: Tab reaches the message box")
    page.keyboard.type("sent by keyboard")
    page.keyboard.press("Tab")
    check(page.evaluate("document.activeElement.textContent") == "Send", "keyboard: Tab moves on to Send")
    outline = page.evaluate("(() => { const s = getComputedStyle(document.activeElement); return [s.outlineStyle, s.outlineWidth]; })()")
    check(outline[0] != "none" and outline[1] != "0px", f"keyboard: the focused button shows a focus ring {outline}")
    page.keyboard.press("Enter")
    expect(page.locator(".message.operator", has_text="sent by keyboard")).to_have_count(1)
    ok("keyboard: the message was sent and shown")
    screenshots(browser, shots, "chat", dark=True)

    # Live: a message sent elsewhere appears in the open chat.
    api.call("POST", "/api/chats/e2e-night/send", body={"text": "sent from a script"})
    expect(page.locator(".message.operator", has_text="sent from a script")).to_have_count(1)
    ok("live: a message sent elsewhere appears in the open chat")
    page.wait_for_function("[...document.querySelectorAll('.message')].every((m) => Number.isInteger(Number(m.dataset.seq)))")
    shown = page.evaluate("[...document.querySelectorAll('.message')].map((m) => Number(m.dataset.seq))")
    stored = [m["seq"] for m in api.messages("e2e-night")]
    check(shown == stored, f"chat view: every stored message shown once, in order {shown}")

    # A long chat: the view pages back through its history; archived, it moves to the other list.
    for n in range(30):
        status, _ = api.call("POST", "/api/chats/e2e-long/send", body={"text": f"long {n}"})
        if status != 200:
            raise Failure(f"seeding e2e-long: {status}")
    page.goto(f"{origin}/admin/#/chats/e2e-long")
    expect(page.locator(".message")).to_have_count(50)
    expect(page.locator(".message").first).to_contain_text("long 5")
    page.get_by_role("button", name="Load older messages", exact=True).click()
    expect(page.locator(".message")).to_have_count(60)
    expect(page.locator(".message").first).to_contain_text("long 0")
    expect(page.get_by_role("button", name="Load older messages", exact=True)).to_be_hidden()
    ok("chat view: 50 newest messages, then the older ten, oldest first")
    page.get_by_role("button", name="Archive chat", exact=True).click()
    expect(page.get_by_role("button", name="Restore from archive", exact=True)).to_be_visible()
    page.get_by_role("link", name="All chats").click()
    expect(page.get_by_role("link", name="e2e-night")).to_be_visible()
    expect(page.get_by_role("link", name="e2e-long")).to_have_count(0)
    page.get_by_label("Show", exact=True).select_option("true")
    expect(page.get_by_role("link", name="e2e-long")).to_be_visible()
    expect(page.get_by_role("link", name="e2e-night")).to_have_count(0)
    ok("chat index: e2e-night among the active chats, the archived e2e-long only among the archived")
    page.get_by_label("Show", exact=True).select_option("false")
    expect(page.get_by_role("link", name="e2e-night")).to_be_visible()
    labelled(browser, "chat index")
    screenshots(browser, shots, "chats")

    # Audit: the send is there, the chain verifies, the export downloads.
    page.get_by_role("link", name="Audit", exact=True).click()
    page.get_by_label("Action", exact=True).select_option("chat.send")
    page.get_by_label("Target", exact=True).fill("chat:e2e-night")
    page.get_by_role("button", name="Apply filters", exact=True).click()
    expect(page.locator("tbody tr", has_text="chat.send")).to_have_count(4)
    ok("audit: the four sends to e2e-night are in the trail")
    page.get_by_label("Action", exact=True).select_option("")
    page.get_by_label("Target", exact=True).fill("")
    page.get_by_role("button", name="Apply filters", exact=True).click()
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(50)
    newest = int(rows.first.locator("td").first.inner_text())
    page.get_by_role("button", name="Next page of audit events", exact=True).click()
    expect(rows.first.locator("td").first).to_have_text(str(newest - 50))
    page.get_by_role("button", name="Previous page of audit events", exact=True).click()
    # Reading the trail is itself audited, so the first page now starts at a newer event.
    expect(rows.first.locator("td").first).not_to_have_text(str(newest - 50))
    check(int(rows.first.locator("td").first.inner_text()) >= newest,
          f"audit: paging forward and back through the trail (head #{newest})")
    page.get_by_role("button", name="Verify chain", exact=True).click()
    expect(page.locator("#main").get_by_text(re.compile(r"^Chain valid"))).to_be_visible()
    ok("audit: the chain verifies")
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("Download export")).click()
    lines = Path(download.value.path()).read_text().splitlines()
    check(len(lines) > 0 and all(json.loads(line)["seq"] for line in lines), f"audit: the export downloads ({len(lines)} events)")
    labelled(browser, "audit")
    screenshots(browser, shots, "audit")

    # Overview again: the live feed shows what happens while it is open.
    page.get_by_role("link", name="Overview").click()
    expect(page.locator(".card")).to_have_count(8)
    api.call("POST", "/api/chats/e2e-feed/send", body={"text": "for the feed"})
    expect(page.locator(".feed li", has_text="chat.send on chat e2e-feed")).to_have_count(1)
    ok("overview: the live feed shows a send made elsewhere")
    screenshots(browser, shots, "overview", dark=True)

    # Retention: a dry run, then a real run after the confirmation.
    page.get_by_role("link", name="Retention").click()
    page.get_by_role("button", name="Preview (dry run)", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(r"^Dry run #"))).to_be_visible()
    ok("retention: the dry run shows its preview")
    page.get_by_role("button", name="Run now", exact=True).click()
    page.get_by_role("dialog").get_by_role("button", name="Run retention", exact=True).click()
    expect(page.locator("#main").get_by_text(re.compile(r"^Run #\d+: ok"))).to_be_visible()
    status, runs = api.call("GET", "/api/admin/retention/runs")
    check(status == 200 and [r["dry_run"] for r in runs["items"]][:2] == [False, True],
          "retention: the job log holds the run and the dry run")
    labelled(browser, "retention")
    screenshots(browser, shots, "retention")

    # Keys: create one, its secret works; revoke it, its secret is refused.
    page.get_by_role("link", name="Keys").click()
    page.get_by_label("Name", exact=True).fill("e2e-viewer")
    page.get_by_label("Role", exact=True).select_option("viewer")
    page.get_by_role("button", name="Create key", exact=True).click()
    secret = page.get_by_label("Secret", exact=True).input_value()
    check(secret.startswith("sk_"), "keys: the new key's secret is shown")
    status, me = api.call("GET", "/api/auth/me", key=secret)
    check(status == 200 and me["role"] == "viewer", "keys: the shown secret signs in as a viewer")
    labelled(browser, "keys")
    screenshots(browser, shots, "keys")
    page.get_by_role("button", name=re.compile(r"^Revoke key e2e-viewer")).click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke key", exact=True).click()
    expect(page.locator("#main").get_by_text(re.compile(r"^Key e2e-viewer .* revoked"))).to_be_visible()
    status, _ = api.call("GET", "/api/auth/me", key=secret)
    check(status == 401, "keys: the revoked key is refused")

    # Rate limits: the configured limits and the recent window.
    page.get_by_role("link", name="Rate limits").click()
    expect(page.get_by_role("row", name=re.compile(r"Per chat 600 100"))).to_be_visible()
    ok("rate limits: the configured limits are shown (600/min, burst 100 per chat)")
    labelled(browser, "rate limits")
    screenshots(browser, shots, "rate-limits")

    # Sign out: the page asks for a key again, and the session is refused.
    refusals_before = browser.refusals
    page.get_by_role("button", name="Log out", exact=True).click()
    expect(page.get_by_label("API key", exact=True)).to_be_visible()
    expect(page.locator("#session")).to_be_hidden()
    expect(page.locator("#main")).to_contain_text("You are signed out.")
    answer = page.request.get(f"{origin}/api/auth/me")
    check(answer.status == 401, "signed out: the browser's session is refused")
    page.reload()
    expect(page.get_by_label("API key", exact=True)).to_be_visible()
    ok("signed out: a reload asks for a key again")
    check(browser.refusals > refusals_before, "signed out: the refusal was the service's 401")

    # Other roles see only what they may use, and the service refuses the rest all the same.
    for role, sections in (("operator", ["Chats"]), ("viewer", ["Overview", "Chats", "Rate limits"])):
        status, created = api.call("POST", "/api/admin/keys", body={"name": f"e2e-{role}", "role": role})
        if status != 201:
            raise Failure(f"creating a {role} key: {status}")
        page.get_by_label("API key", exact=True).fill(created["key"])
        page.get_by_role("button", name="Sign in", exact=True).click()
        expect(page.locator("#session-role")).to_have_text(role)
        shown = page.locator("#sections li:not([hidden]) a").all_inner_texts()
        check(shown == sections, f"{role}: the sections shown are {shown}")
        page.goto(f"{origin}/admin/#/keys")
        expect(page.get_by_role("heading", name="API keys")).to_have_count(0)
        page.goto(f"{origin}/admin/#/chats/e2e-night")
        expect(page.get_by_role("heading", name="Night shift", level=1)).to_be_visible()
        composer = page.get_by_label("Message", exact=True)
        if role == "viewer":
            expect(composer).to_have_count(0)
            expect(page.get_by_role("button", name="Archive chat", exact=True)).to_have_count(0)
        else:
            expect(composer).to_be_visible()
        csrf = {"X-Requested-With": "sofiia-console"}
        keys = page.request.get(f"{origin}/api/admin/keys")
        run = page.request.post(f"{origin}/api/admin/retention/run", data={"dry_run": True}, headers=csrf)
        check(keys.status == 403 and run.status == 403,
              f"{role}: the keys page is not offered and the service refuses keys ({keys.status}) and retention ({run.status})")
        page.get_by_role("button", name="Log out", exact=True).click()
        expect(page.get_by_label("API key", exact=True)).to_be_visible()

    check(browser.foreign == [], f"no request left the origin {browser.foreign}")
    check(browser.exceptions == [], f"no uncaught exception {browser.exceptions}")
    check(browser.console_errors == [], f"no console error {browser.console_errors}")
    check(browser.csp_violations() == [], "no CSP violation")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--key-file", required=True)
    parser.add_argument("--chromium", required=True)
    parser.add_argument("--profile", required=True)
    parser.add_argument("--screenshots", required=True)
    args = parser.parse_args()
    try:
        run(args)
    except (Failure, AssertionError, PlaywrightError) as failure:
        print(f"FAIL {failure}", flush=True)
        sys.exit(1)
    print("admin e2e: all checks passed", flush=True)


if __name__ == "__main__":
    main()
