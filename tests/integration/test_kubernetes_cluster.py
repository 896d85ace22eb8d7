"""A Kubernetes cluster on local hosts, end to end: 3 masters and a node, used with the real kubectl and
nothing but the bundle's kubeconfig; anonymous access refused everywhere; one master stopped and back;
scale out and in; a second run that changes nothing; delete leaving nothing (conftest checks)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, changed_tasks, docker, env, owned_objects, recap_changed, wait_until

NAME = "it-kube"
CLUSTERS = (NAME,)
CACHE = Path(os.environ.get("CARINA_CACHE", ROOT / ".cache"))
KUBECTL = CACHE / "kubernetes" / "v1.20.2" / "bin" / "kubectl"
# The machine's kernel settings the kubelet would write (it must not).
KERNEL_SETTINGS = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
                   "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes")


def kernel_settings() -> dict[str, str]:
    return {key: Path("/proc/sys", key).read_text().strip() for key in KERNEL_SETTINGS}


def playbook(name: str, home: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = ["ansible-playbook", f"playbooks/{name}.yml", "-e", f"carina_name={NAME}", "-e", f"carina_home={home}",
           "-e", "carina_coe=kubernetes", *extra]
    return subprocess.run(cmd, cwd=ROOT, env=env() | {"ANSIBLE_NOCOLOR": "1"}, capture_output=True, text=True,
                          timeout=1200, check=False)


def kubectl(state: Path, *args: str, check: bool = True, timeout: int = 60, stdin: str | None = None):
    # kubectl keeps a cache under HOME: the test's carina home, not the repository.
    clean_env = {"KUBECONFIG": str(state / "kubeconfig"), "PATH": os.defpath, "HOME": str(state.parent.parent)}
    proc = subprocess.run([str(KUBECTL), *args], env=clean_env,
                          capture_output=True, text=True, timeout=timeout, input=stdin, check=False)
    if check:
        assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc






def nodes(state: Path) -> dict[str, str]:
    """{node: status of its Ready condition}."""
    items = json.loads(kubectl(state, "get", "nodes", "-o", "json").stdout)["items"]
    return {item["metadata"]["name"]: next(c["status"] for c in item["status"]["conditions"] if c["type"] == "Ready")
            for item in items}


def addresses(cluster: str) -> dict[str, str]:
    """{host container: its address} of the cluster."""
    names = owned_objects(cluster)["containers"]
    out = docker("inspect", "--format", "{{.Name}} {{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", *names)
    return {line.split()[0].lstrip("/"): line.split()[1] for line in out.splitlines()}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    if not KUBECTL.exists():
        pytest.fail(f"{KUBECTL} is missing: run `make setup` (it builds the Kubernetes binaries)")
    home = tmp_path_factory.mktemp("kube-home")
    yield home
    playbook("delete", home)


@pytest.fixture(scope="module")
def cluster(home):
    before = kernel_settings()
    started = time.time()
    proc = playbook("create", home, "-e", "carina_masters=3", "-e", "carina_nodes=1")
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-3000:]
    print(f"create took {time.time() - started:.1f}s")
    state = home / "clusters" / NAME
    return {"state": state, "kernel": before, "record": json.loads((state / "cluster.json").read_text()),
            "log": proc.stdout}


def test_every_node_ready_through_the_bundle(cluster):
    state = cluster["state"]
    assert (state / "kubeconfig").stat().st_mode & 0o777 == 0o600
    assert nodes(state) == {f"{NAME}-master-{i}": "True" for i in (1, 2, 3)} | {f"{NAME}-node-1": "True"}
    roles = kubectl(state, "get", "nodes", "-L", "node-role.kubernetes.io/master", "-o", "name",
                    "-l", "node-role.kubernetes.io/master").stdout.split()
    assert sorted(roles) == [f"node/{NAME}-master-{i}" for i in (1, 2, 3)]
    assert cluster["record"]["api_url"] == f"https://{cluster['record']['endpoint']}:6443"
    assert "KUBECONFIG" in (state / "kube.env").read_text()
    # No CoreDNS image is configured: the run says DNS is skipped.
    assert "Cluster DNS is skipped: no CoreDNS image is configured" in cluster["log"]


def test_the_machines_kernel_settings_are_untouched(cluster):
    assert kernel_settings() == cluster["kernel"]


def _tls(address: str, port: int, request: bytes | None) -> str:
    """What an anonymous client gets: the HTTP status line, or the TLS error."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((address, port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=address) as sock:
            if request is None:
                sock.recv(1)
                return "connected"
            sock.sendall(request)
            return sock.recv(200).decode("latin-1").split("\r\n", 1)[0]
    except (ssl.SSLError, OSError) as exc:
        return f"refused: {exc.__class__.__name__}"


def test_anonymous_requests_are_refused(cluster):
    record, hosts = cluster["record"], addresses(NAME)
    get = b"GET /api/v1/namespaces/kube-system/secrets HTTP/1.1\r\nHost: x\r\n\r\n"
    assert _tls(record["endpoint"], 6443, get).startswith("HTTP/1.1 401")
    assert _tls(hosts[f"{NAME}-master-1"], 6443, get).startswith("HTTP/1.1 401")
    assert _tls(hosts[f"{NAME}-node-1"], 10250, b"GET /pods HTTP/1.1\r\nHost: x\r\n\r\n").startswith("HTTP/1.1 401")
    # etcd wants a client certificate of its own CA before anything is said.
    assert _tls(hosts[f"{NAME}-master-2"], 2379, b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n").startswith("refused")
    # Nothing listens in the clear: the old insecure ports are closed.
    for port in (8080, 10255, 10252, 10251):
        with pytest.raises(OSError):
            socket.create_connection((hosts[f"{NAME}-master-1"], port), timeout=3).close()


WORKLOAD = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      tolerations: [{key: node-role.kubernetes.io/master, effect: NoSchedule}]
      topologySpreadConstraints:
        - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule,
           labelSelector: {matchLabels: {app: web}}}
      containers:
        - name: web
          image: localhost/carina/shell:1.0
          imagePullPolicy: Never
          # sh stays PID 1 and ends on SIGTERM (httpd as PID 1 ignores it, so every drain waited out its
          # grace period); the pod's other processes end with it.
          command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && echo serving;
                             trap "exit 0" TERM; httpd -f -p 8080 -h /www & wait']
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"""


def fetch(state: Path, pod: str, address: str, port: int) -> str:
    script = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {address} {port} | tail -n 1"
    return kubectl(state, "exec", pod, "--", "sh", "-c", script, check=False).stdout.strip()


def test_pods_spread_talk_across_nodes_and_through_a_service(cluster):
    state = cluster["state"]
    kubectl(state, "apply", "-f", "-", stdin=WORKLOAD)
    kubectl(state, "rollout", "status", "deployment/web", "--timeout=120s", timeout=150)
    pods = json.loads(kubectl(state, "get", "pods", "-l", "app=web", "-o", "json").stdout)["items"]
    placed = {pod["spec"]["nodeName"]: (pod["metadata"]["name"], pod["status"]["podIP"]) for pod in pods}
    assert len(placed) == 4, placed  # one per node
    (src_node, (src, _)), *others = sorted(placed.items())
    for node, (name, ip) in others:
        assert fetch(state, src, ip, 8080) == name, f"pod on {src_node} cannot reach {name} on {node} at {ip}"
    service = kubectl(state, "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}").stdout
    answers = {fetch(state, src, service, 80) for _ in range(12)}
    assert answers <= {name for name, _ in placed.values()} and len(answers) >= 2, answers
    assert "serving" in kubectl(state, "logs", src).stdout


ETCDCTL = ("etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.pem "
           "--cert=/etc/kubernetes/pki/etcd/apiserver-client.pem "
           "--key=/etc/kubernetes/pki/etcd/apiserver-client-key.pem")


def etcd_leader(master: str) -> str:
    """The name of the etcd member that leads, as the member on `master` sees it."""
    members = json.loads(docker("exec", master, "sh", "-c", f"{ETCDCTL} member list -w json"))["members"]
    status = json.loads(docker("exec", master, "sh", "-c", f"{ETCDCTL} endpoint status -w json"))
    return next(m["name"] for m in members if m["ID"] == status[0]["Status"]["leader"])


def test_a_stopped_master_does_not_stop_the_api_and_comes_back(cluster):
    # The worst master to lose: the one whose etcd member leads (reads wait on it until a new leader
    # is elected; an API server that does not retry them answers "etcdserver: leader changed").
    state = cluster["state"]
    victim = etcd_leader(f"{NAME}-master-1")
    docker("stop", "-t", "1", victim)
    try:
        failed = []
        for _ in range(20):
            proc = kubectl(state, "get", "nodes", "-o", "name", check=False, timeout=20)
            if proc.returncode != 0:
                failed.append(proc.stderr.strip())
            time.sleep(0.5)
        assert not failed, f"{len(failed)} of 20 kubectl calls failed with {victim} (the etcd leader) stopped: {failed}"
        wait_until(lambda: nodes(state).get(victim) != "True", 90, f"{victim} to be seen NotReady")
    finally:
        docker("start", victim)
    wait_until(lambda: nodes(state).get(victim) == "True", 180, f"{victim} Ready again")
    kubectl(state, "rollout", "status", "deployment/web", "--timeout=120s", timeout=150)


def test_a_rerun_starts_what_stopped_then_a_second_changes_nothing(home, cluster):
    """No file to change, yet a service stopped or disabled, or a local image containerd lost: the rerun sees
    it (the node is not steady), starts the service and imports the image, and every node is Ready after. The
    run after that changes nothing anywhere."""
    state, node, master = cluster["state"], f"{NAME}-node-1", f"{NAME}-master-2"
    docker("exec", node, "systemctl", "stop", "kubelet", "kube-proxy")
    docker("exec", master, "systemctl", "disable", "--now", "kube-scheduler")
    docker("exec", node, "ctr", "-n", "k8s.io", "images", "rm", "localhost/carina/shell:1.0")
    proc = playbook("create", home, "-e", "carina_masters=3", "-e", "carina_nodes=1")
    assert proc.returncode == 0, proc.stdout[-6000:]
    changed = recap_changed(proc.stdout)
    assert changed[node] > 0 and changed[master] > 0, changed
    assert docker("exec", node, "systemctl", "is-active", "kubelet", "kube-proxy").split() == ["active"] * 2
    assert docker("exec", master, "systemctl", "is-enabled", "kube-scheduler") == "enabled"
    assert docker("exec", master, "systemctl", "is-active", "kube-scheduler") == "active"
    assert "localhost/carina/shell:1.0" in docker("exec", node, "ctr", "-n", "k8s.io", "images", "ls", "-q").split()
    assert set(nodes(state).values()) == {"True"}, nodes(state)
    again = playbook("create", home, "-e", "carina_masters=3", "-e", "carina_nodes=1")
    changed = recap_changed(again.stdout)
    assert again.returncode == 0 and changed and set(changed.values()) == {0}, \
        changed_tasks(again.stdout) or again.stdout[-4000:]


def test_scale_out_and_in_by_name(home, cluster):
    state = cluster["state"]
    proc = playbook("scale", home, "-e", "carina_nodes=2")
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert nodes(state).get(f"{NAME}-node-2") == "True"
    removal = json.dumps({"carina_remove_nodes": [f"{NAME}-node-1"]})
    proc = playbook("scale", home, "-e", "carina_nodes=1", "-e", removal)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert nodes(state) == {f"{NAME}-master-{i}": "True" for i in (1, 2, 3)} | {f"{NAME}-node-2": "True"}
    assert f"{NAME}-node-1" not in addresses(NAME)
    kubectl(state, "rollout", "status", "deployment/web", "--timeout=120s", timeout=150)


def etcd_members(master: str) -> list[str]:
    out = docker("exec", master, "sh", "-c", f"{ETCDCTL} member list -w simple")
    return sorted(line.split(", ")[2] for line in out.splitlines())


def test_masters_scale_between_odd_counts(home, cluster):
    state = cluster["state"]
    proc = playbook("scale", home, "-e", "carina_masters=1")
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert etcd_members(f"{NAME}-master-1") == [f"{NAME}-master-1"]
    assert sorted(n for n in nodes(state) if "-master-" in n) == [f"{NAME}-master-1"]
    proc = playbook("scale", home, "-e", "carina_masters=3")
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert etcd_members(f"{NAME}-master-1") == [f"{NAME}-master-{i}" for i in (1, 2, 3)]
    assert {n: s for n, s in nodes(state).items() if "-master-" in n} == {
        f"{NAME}-master-{i}": "True" for i in (1, 2, 3)}
    even = playbook("scale", home, "-e", "carina_masters=2")
    assert even.returncode != 0 and "must be odd" in even.stdout
    kubectl(state, "rollout", "status", "deployment/web", "--timeout=120s", timeout=150)


def test_cluster_dns_is_wired_when_an_image_is_given(home, cluster):
    """No CoreDNS image exists here: the objects, the Service address and the pods' resolv.conf are
    checked; the CoreDNS pods themselves cannot run (the test scales them to 0 afterwards)."""
    state = cluster["state"]
    options = json.dumps({"carina_coe_options": {"dns_image": "localhost/carina/shell:1.0"}})
    proc = playbook("create", home, "-e", "carina_masters=3", "-e", "carina_nodes=1", "-e", options)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert "Cluster DNS is skipped" not in proc.stdout
    service = kubectl(state, "-n", "kube-system", "get", "service", "kube-dns", "-o", "jsonpath={.spec.clusterIP}")
    assert service.stdout == "198.19.224.10"
    image = kubectl(state, "-n", "kube-system", "get", "deployment", "coredns",
                    "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    assert image.stdout == "localhost/carina/shell:1.0"
    kubectl(state, "run", "resolv", "--image=localhost/carina/shell:1.0", "--image-pull-policy=Never",
            "--restart=Never", "--", "cat", "/etc/resolv.conf")
    resolv = wait_until(lambda: kubectl(state, "logs", "resolv", check=False).stdout, 90, "the pod's resolv.conf")
    assert "nameserver 198.19.224.10" in resolv and "search default.svc.cluster.local" in resolv
    kubectl(state, "delete", "pod", "resolv", "--wait=false")
    # A second run with the option recorded changes nothing.
    again = playbook("create", home, "-e", "carina_masters=3", "-e", "carina_nodes=1")
    assert again.returncode == 0 and set(recap_changed(again.stdout).values()) == {0}, \
        changed_tasks(again.stdout) or again.stdout[-4000:]
    kubectl(state, "-n", "kube-system", "scale", "deployment/coredns", "--replicas=0")


def test_a_missing_binary_comes_from_the_controllers_folder(home, cluster):
    node = f"{NAME}-node-1" if f"{NAME}-node-1" in addresses(NAME) else f"{NAME}-node-2"
    docker("exec", node, "rm", "/usr/local/bin/kube-proxy")
    # A binary of another release in place of the recorded one (its record no longer matches the file).
    master = f"{NAME}-master-1"
    fake = "rm {0} && printf '#!/bin/sh\\necho Kubernetes v1.19.0\\n' > {0} && chmod 755 {0}"
    docker("exec", master, "sh", "-c", fake.format("/usr/local/bin/kube-scheduler"))
    assert docker("exec", master, "/usr/local/bin/kube-scheduler", "--version") == "Kubernetes v1.19.0"
    folder = json.dumps({"carina_coe_options": {"binaries": str(KUBECTL.parent)}})
    proc = playbook("create", home, "-e", "carina_masters=3", "-e", "carina_nodes=1", "-e", folder)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert docker("exec", node, "/usr/local/bin/kube-proxy", "--version") == "Kubernetes v1.20.2"
    assert docker("exec", master, "/usr/local/bin/kube-scheduler", "--version") == "Kubernetes v1.20.2"
    # Back to the default source: nothing is missing, nothing is fetched; only the record notes the option.
    again = playbook("create", home, "-e", "carina_masters=3", "-e", "carina_nodes=1",
                     "-e", json.dumps({"carina_coe_options": {"binaries": "release"}}))
    hosts = {host: count for host, count in recap_changed(again.stdout).items() if host != "localhost"}
    assert again.returncode == 0 and set(hosts.values()) == {0}, changed_tasks(again.stdout) or again.stdout[-4000:]


def test_a_missing_binary_is_downloaded_and_checked(home, cluster, tmp_path):
    """`binaries: release` against a release server on the cluster network's gateway (this machine):
    the download is checked against its published SHA-256, and a wrong one fails the run."""
    node = f"{NAME}-node-1" if f"{NAME}-node-1" in addresses(NAME) else f"{NAME}-node-2"
    gateway = docker("network", "inspect", "--format", "{{(index .IPAM.Config 0).Gateway}}", f"carina-{NAME}")
    folder = tmp_path / "v1.20.2" / "bin" / "linux" / "amd64"
    folder.mkdir(parents=True)
    data = (KUBECTL.parent / "kube-proxy").read_bytes()
    (folder / "kube-proxy").write_bytes(data)
    (folder / "kube-proxy.sha256").write_text(hashlib.sha256(data).hexdigest())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer((gateway, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = {"binaries": "release", "release_url": f"http://{gateway}:{server.server_address[1]}"}
    try:
        (folder / "kube-proxy.sha256").write_text("0" * 64)
        docker("exec", node, "rm", "/usr/local/bin/kube-proxy")
        bad = playbook("create", home, "-e", "carina_masters=3", "-e", "carina_nodes=1",
                       "-e", json.dumps({"carina_coe_options": options}))
        assert bad.returncode != 0 and "checksum" in bad.stdout.lower(), bad.stdout[-4000:]
        (folder / "kube-proxy.sha256").write_text(hashlib.sha256(data).hexdigest())
        good = playbook("create", home, "-e", "carina_masters=3", "-e", "carina_nodes=1",
                        "-e", json.dumps({"carina_coe_options": options}))
        assert good.returncode == 0, good.stdout[-6000:]
    finally:
        server.shutdown()
        server.server_close()
    assert docker("exec", node, "/usr/local/bin/kube-proxy", "--version") == "Kubernetes v1.20.2"
