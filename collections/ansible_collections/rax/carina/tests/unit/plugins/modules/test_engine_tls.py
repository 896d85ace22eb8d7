# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""engine_tls: the authorization plug-in it installs, run for real on a Unix socket and spoken to as Docker
does; the files it plans with and without restricted clients; bad restrictions refused up front."""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import time

import pytest
from ansible_collections.rax.carina.plugins.modules import engine_tls

from ansible_collections.rax.carina.tests.unit.plugins.modules.module_runner import run_module

CERT = "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n"
RESTRICTED = {"demo-lb-health": ["GET /_ping", "HEAD /_ping"]}


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def policy_argument(unit):
    """The base64 policy the service unit passes the program (the last word of its ExecStart)."""
    return next(line for line in unit.splitlines() if line.startswith("ExecStart=")).split()[-1]


@pytest.fixture
def plugin(tmp_path):
    """The plug-in program, started with the policy its service unit gives it, on a socket of the test's."""
    program = tmp_path / "carina-docker-authz"
    program.write_text(engine_tls.AUTHZ_SOURCE)
    argument = policy_argument(engine_tls.authz_service_text(RESTRICTED))
    path = str(tmp_path / "authz.sock")
    proc = subprocess.Popen([sys.executable, "-I", str(program), argument], env={"CARINA_AUTHZ_SOCKET": path})
    deadline = time.time() + 10
    while not os.path.exists(path) and time.time() < deadline:
        time.sleep(0.05)

    def post(endpoint, body):
        conn = UnixConnection(path)
        try:
            conn.request("POST", endpoint, json.dumps(body), {"Content-Type": "application/json"})
            answer = conn.getresponse()
            data = answer.read()
            return answer.status, json.loads(data) if answer.status == 200 else data.decode()
        finally:
            conn.close()

    yield post
    proc.terminate()
    proc.wait(timeout=10)


def request(user, method, uri):
    return {"User": user, "UserAuthNMethod": "TLS" if user else "", "RequestMethod": method, "RequestUri": uri}


def test_the_plugin_lets_a_restricted_client_ping_and_nothing_else(plugin):
    assert plugin("/Plugin.Activate", {}) == (200, {"Implements": ["authz"]})
    allowed = [request("demo-lb-health", "GET", "/_ping"), request("demo-lb-health", "HEAD", "/v1.45/_ping"),
               request("demo-lb-health", "GET", "/v1.45/_ping?x=1"), request("admin", "POST", "/v1.45/swarm/leave"),
               request("", "DELETE", "/v1.45/containers/x")]
    for req in allowed:
        assert plugin("/AuthZPlugin.AuthZReq", req) == (200, {"Allow": True}), req
    for uri in ("/v1.45/info", "/v1.45/_ping/../info", "/_pingx", "/v1.45/containers/json"):
        status, answer = plugin("/AuthZPlugin.AuthZReq", request("demo-lb-health", "GET", uri))
        assert status == 200 and answer["Allow"] is False, uri
        assert answer["Msg"] == "demo-lb-health may only make these calls: GET /_ping, HEAD /_ping"
    status, answer = plugin("/AuthZPlugin.AuthZReq", request("demo-lb-health", "POST", "/_ping"))
    assert answer["Allow"] is False
    assert plugin("/AuthZPlugin.AuthZRes", request("demo-lb-health", "GET", "/_ping")) == (200, {"Allow": True})
    assert plugin("/Unknown.Call", {})[0] == 404


def test_without_a_policy_every_tls_client_is_refused(tmp_path):
    program = tmp_path / "carina-docker-authz"
    program.write_text(engine_tls.AUTHZ_SOURCE)
    code = ("import runpy, sys; sys.argv = ['p', 'not base64 json']; "
            f"g = runpy.run_path({str(program)!r}, run_name='x'); "
            "print(g['decide']({'User': 'admin', 'RequestMethod': 'GET', 'RequestUri': '/_ping'})); "
            "print(g['decide']({'User': '', 'RequestMethod': 'GET', 'RequestUri': '/info'}))")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True).stdout
    refused, local = out.splitlines()
    assert "'Allow': False" in refused and "cannot read its policy" in refused
    assert local == "{'Allow': True}"


def test_the_plugin_files_come_only_with_restricted_clients():
    base = {"ca_cert": CERT, "cert": CERT, "key": KEY, "port": 2376, "bind_address": "198.18.0.2", "tls_dir": "/etc/t",
            "labels": {}, "daemon_options": {}, "dockerd": "/usr/sbin/dockerd"}
    plain = {path: data for path, data, _mode in engine_tls.wanted_files(base | {"restricted_clients": {}})}
    assert not set(plain) & set(engine_tls.AUTHZ_FILES)
    assert "authorization-plugins" not in json.loads(plain[engine_tls.DAEMON_JSON])
    assert b"carina-docker-authz" not in plain[engine_tls.DROPIN]
    planned = engine_tls.wanted_files(base | {"restricted_clients": RESTRICTED})
    files = {path: (data, mode) for path, data, mode in planned}
    assert set(engine_tls.AUTHZ_FILES) <= set(files)
    assert json.loads(files[engine_tls.DAEMON_JSON][0])["authorization-plugins"] == ["carina-authz"]
    assert b"Requires=carina-docker-authz.socket" in files[engine_tls.DROPIN][0]
    assert files[engine_tls.AUTHZ_SPEC][0] == b"unix:///run/carina-docker-authz.sock\n"
    service = files[engine_tls.AUTHZ_SERVICE_UNIT][0].decode()
    argument = policy_argument(service)
    assert json.loads(base64.b64decode(argument)) == {"restricted": RESTRICTED}
    assert "User=nobody" in service and files[engine_tls.AUTHZ_PROGRAM][1] == 0o755


@pytest.mark.parametrize("restricted", [{"x": []}, {"x": "GET /_ping"}, {"x": ["GET _ping"]}, {"x": ["FETCH /_ping"]},
                                        {"x": ["GET /_ping extra"]}])
def test_bad_restrictions_fail_before_anything(capsys, restricted):
    result = run_module(engine_tls.main, capsys, {"ca_cert": CERT, "cert": CERT, "key": KEY,
                                                  "restricted_clients": restricted, "dockerd": "/nonexistent"})
    assert result["failed"] and "restricted_clients" in result["msg"], result
