"""The control panel in headless Chromium, as a new user would use it: the form refuses a bad cluster with every
problem, makes a good one whose card goes live to CREATE_COMPLETE, Get Access downloads a zip that docker uses as
it is, and a delete needs the name typed. Screenshots are kept in test-artifacts/."""

from __future__ import annotations

import re
import signal
import subprocess

import pytest

from tests.helpers import ROOT, left_behind, owned_objects

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

# The clusters this module makes (conftest checks that nothing of theirs is left).
CLUSTERS = ("pnl1",)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """carina serve without Keystone on a free port of 127.0.0.1; stopped by its pid at the end."""
    base = tmp_path_factory.mktemp("panel")
    log = open(base / "serve.log", "w+")  # noqa: SIM115 - the process writes it until the end
    proc = subprocess.Popen(["carina", "serve", "--home", str(base / "home"), "--port", "0"], stdout=subprocess.PIPE,
                            stderr=log, text=True, start_new_session=True)
    line = proc.stdout.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+)/v1", line)
    assert match, f"carina serve said {line!r}; log: {(base / 'serve.log').read_text()}"
    yield {"url": match[1], "home": base / "home"}
    for name in left_behind(base / 'home', CLUSTERS):
        # what a failed test left
        subprocess.run(["ansible-playbook", "playbooks/delete.yml", "-e", f"carina_name={name}",
                        "-e", f"carina_home={base / 'home'}"], cwd=ROOT, capture_output=True, check=False)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    log.close()


def refuse_a_bad_form(page, artifacts) -> None:
    """A bad spec gets every problem at once, from the same rules as the CLI, and nothing is made."""
    page.get_by_role("button", name="Add Cluster…").click()
    dialog = page.locator("dialog#create")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Cluster type")).to_have_value("swarm")
    dialog.get_by_label("Name", exact=True).fill("Pnl 1")
    dialog.get_by_label("Managers").fill("2")
    dialog.get_by_role("button", name="Create").click()
    listed = dialog.locator("#create-problems li")
    expect(listed).to_have_count(2)
    expect(listed.nth(0)).to_contain_text("name 'Pnl 1': use 1 to 40 lower-case letters")
    expect(listed.nth(1)).to_contain_text("masters=2: the number of managers must be odd")
    expect(dialog.get_by_label("Managers")).to_have_attribute("aria-invalid", "true")
    page.screenshot(path=artifacts / "2-form-problems.png")


def get_access(page, card, tmp_path) -> None:
    """The zip, unpacked anywhere with unzip, points docker at the cluster; the key is the user's alone."""
    with page.expect_download() as download:
        card.get_by_role("button", name="Get Access").click()
    assert download.value.suggested_filename == "pnl1.zip"
    bundle = tmp_path / "pnl1.zip"
    download.value.save_as(bundle)
    subprocess.run(["unzip", "-q", str(bundle), "-d", str(tmp_path / "unpacked")], check=True, timeout=60)
    assert (tmp_path / "unpacked" / "pnl1" / "key.pem").stat().st_mode & 0o777 == 0o600
    info = subprocess.run(["bash", "-c", "source unpacked/pnl1/docker.env && "
                           "docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.Nodes}}'"], cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60, check=False)
    assert info.stdout.split() == ["active", "2"], info.stderr


def delete(page, card, artifacts) -> None:
    """Delete asks for the name first; the card goes once the cluster has gone."""
    card.get_by_role("button", name="Delete").click()
    confirm = page.locator("dialog#confirm")
    expect(confirm).to_be_visible()
    button = confirm.get_by_role("button", name="Delete")
    expect(button).to_be_disabled()
    confirm.get_by_label("Type the cluster's name to confirm").fill("pnl")
    expect(button).to_be_disabled()
    confirm.get_by_label("Type the cluster's name to confirm").fill("pnl1")
    page.screenshot(path=artifacts / "5-confirm-delete.png")
    button.click()
    expect(confirm).to_be_hidden()
    expect(card).to_have_count(0, timeout=300_000)
    page.screenshot(path=artifacts / "6-deleted.png")


def test_a_user_makes_gets_access_to_and_deletes_a_cluster_in_the_panel(service, browser, artifacts, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    problems = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" and
            "status of 400" not in message.text else None)  # the refused form's answer is expected
    page.goto(service["url"] + "/")  # a browser at the root is sent to the panel
    expect(page).to_have_title("Carina Clusters")
    assert page.url == service["url"] + "/panel/"
    expect(page.locator("article.cluster")).to_have_count(0)
    page.screenshot(path=artifacts / "1-no-clusters.png")
    refuse_a_bad_form(page, artifacts)
    assert owned_objects("pnl1")["containers"] == []

    dialog = page.locator("dialog#create")
    dialog.get_by_label("Name", exact=True).fill("pnl1")
    dialog.get_by_label("Managers").fill("1")
    dialog.get_by_label("Workers").fill("1")
    dialog.get_by_role("button", name="Create").click()
    expect(dialog).to_be_hidden()
    card = page.locator('article.cluster[data-cluster="pnl1"]')
    expect(card).to_have_count(1)
    expect(card.locator(".type")).to_have_text("Docker Swarm cluster")
    expect(card.locator(".segments i")).to_have_count(2)
    expect(card.locator(".segments small")).to_have_text("1 manager · 1 worker")
    expect(card.locator(".badge")).to_have_text(re.compile(r"CREATE_(IN_PROGRESS|COMPLETE)"))
    expect(card).to_contain_text("OFF")  # autoscale
    page.screenshot(path=artifacts / "3-creating.png")

    # The card follows the create without a reload.
    expect(card).to_have_attribute("data-status", "CREATE_COMPLETE", timeout=600_000)
    expect(card.locator(".badge")).to_have_class(re.compile(r"\bok\b"))
    page.screenshot(path=artifacts / "4-complete.png")
    get_access(page, card, tmp_path)
    delete(page, card, artifacts)
    assert owned_objects("pnl1") == {"containers": [], "volumes": [], "networks": []}
    assert problems == []
    page.close()
