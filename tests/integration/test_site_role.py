"""The operator's site role carina_cloud (playbooks/prepare_cloud.yml) on the test cloud, which `cloud.py up`
readies with it (testcloud/site.yml): what it made is what the clouds' users see, a second run changes
nothing, and input it refuses leaves the cloud as it was."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
import yaml

from tests.helpers import ROOT

openstack = pytest.importorskip("openstack")

CLOUDS_YAML = ROOT / ".cache" / "testcloud" / "clouds.yaml"
CLUSTERS = ()  # it makes none


def prepare(*extra: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OS_")}
    env.update(OS_CLIENT_CONFIG_FILE=str(CLOUDS_YAML))
    return subprocess.run(["ansible-playbook", "playbooks/prepare_cloud.yml", "-e", "carina_cloud_cloud=devstack-admin",
                           *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)


def recap(proc: subprocess.CompletedProcess) -> dict[str, int]:
    match = re.search(r"localhost\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", proc.stdout)
    assert match, proc.stdout[-3000:] + proc.stderr[-2000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups()), strict=True))


def openstack_cli(cloud: str, *args: str):
    proc = subprocess.run(["openstack", "--os-cloud", cloud, *args, "-f", "json"], capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(CLOUDS_YAML)})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def admin(test_cloud):
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(CLOUDS_YAML)
    return openstack.connect(cloud="devstack-admin")


def test_the_test_cloud_is_readied_by_the_role_and_a_second_run_changes_nothing(admin):
    image = openstack_cli("devstack", "image", "show", "carina-host-kube")
    assert (image["status"], image["container_format"], image["min_ram"]) == ("active", "docker", 1024)
    assert {key: image["properties"].get(key) for key in ("os_distro", "os_version", "os_admin_user")} == \
        {"os_distro": "debian", "os_version": "12", "os_admin_user": "root"}
    assert image["checksum"], "its data was uploaded"
    flavors = {f["Name"]: (f["VCPUs"], f["RAM"], f["Disk"]) for f in openstack_cli("devstack", "flavor", "list")}
    assert flavors["m1.small"] == (2, 2048, 20)
    quota = openstack_cli("devstack-admin", "quota", "show", "demo", "--compute")
    assert {row["Resource"]: row["Limit"] for row in quota}["instances"] == 30

    proc = prepare("-e", "@testcloud/site.yml")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert recap(proc)["changed"] == 0, proc.stdout[-3000:]


def test_a_config_drive_image_and_the_service_endpoint_then_input_refused_before_anything(admin, tmp_path):
    data = tmp_path / "site-test.docker"
    data.write_text("carina-host:bookworm-engine\n")
    site = {"carina_cloud_images": [{"name": "carina-site-test", "file": str(data), "os_distro": "debian",
                                     "ssh_keys": "config-drive", "disk_format": "raw", "container_format": "docker",
                                     "visibility": "private", "properties": {"os_secure_boot": "required"}}],
            "carina_cloud_endpoint": {"url": "http://127.0.0.1:9/v1", "name": "carina-site-test",
                                      "type": "carina-site-test", "region": "RegionOne",
                                      "interfaces": ["public", "internal"]}}
    (tmp_path / "site.yml").write_text(yaml.safe_dump(site))
    try:
        proc = prepare("-e", f"@{tmp_path / 'site.yml'}")
        assert proc.returncode == 0, proc.stdout[-3000:]
        image = admin.image.get(f"/images/{admin.image.find_image('carina-site-test', ignore_missing=False).id}").json()
        assert (image["status"], image["visibility"], image["os_distro"]) == ("active", "private", "debian")
        assert (image["img_config_drive"], image["os_secure_boot"]) == ("mandatory", "required")
        service = admin.identity.find_service("carina-site-test", ignore_missing=False)
        assert service.type == "carina-site-test"
        assert sorted((e.interface, e.url, e.region_id) for e in admin.identity.endpoints(service_id=service.id)) == \
            [("internal", "http://127.0.0.1:9/v1", "RegionOne"), ("public", "http://127.0.0.1:9/v1", "RegionOne")]
        again = prepare("-e", f"@{tmp_path / 'site.yml'}")
        assert recap(again)["changed"] == 0, again.stdout[-3000:]

        bad = {"carina_cloud_images": [{"name": "carina-site-bad", "file": str(tmp_path / "nowhere"),
                                        "os_distro": "debian"},
                                       {"name": "carina-site-bad", "file": str(data), "os_distro": "debian"}],
               "carina_cloud_flavors": [{"name": "site-bad", "vcpus": 1, "ram": 256, "disk": 1}],
               "carina_cloud_endpoint": {"url": "carina.example.com"}}
        (tmp_path / "bad.yml").write_text(yaml.safe_dump(bad))
        refused = prepare("-e", f"@{tmp_path / 'bad.yml'}")
        assert refused.returncode != 0
        said = " ".join(refused.stdout.split())
        for reason in ("two images are named the same (carina-site-bad, carina-site-bad)",
                       f"no such image file on the controller: {tmp_path / 'nowhere'}",
                       'carina_cloud_endpoint.url must be an http(s) URL, not "carina.example.com"',
                       "carina_cloud_endpoint.region is needed"):
            assert reason in said, said[-3000:]
        assert admin.image.find_image("carina-site-bad") is None
        assert admin.compute.find_flavor("site-bad") is None
    finally:
        image = admin.image.find_image("carina-site-test")
        if image is not None:
            admin.image.delete_image(image)
        service = admin.identity.find_service("carina-site-test")
        if service is not None:
            admin.identity.delete_service(service)  # its endpoints go with it
