# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""octavia_lb against an in-memory Octavia that is immutable while PENDING_* (no cloud needed)."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from ansible_collections.rax.carina.plugins.module_utils import openstack as os_utils
from ansible_collections.rax.carina.plugins.modules import octavia_lb
from ansible_collections.rax.carina.tests.unit.plugins.modules.module_runner import run_module

openstack = pytest.importorskip("openstack")


class FakeOctavia:
    def __init__(self):
        self.ids = itertools.count(1)
        self.lbs, self.listeners, self.pools, self.monitors, self.members = {}, {}, {}, {}, {}
        self.floating = {}
        self.conflicts = 0
        self.subnet = SimpleNamespace(id="sub1", name="private-subnet", cidr="198.18.100.0/24")
        self.external = SimpleNamespace(id="ext1", name="public")
        self.load_balancer = SimpleNamespace(
            find_load_balancer=lambda name, ignore_missing=True: next(
                (lb for lb in self.lbs.values() if name in (lb.id, lb.name)), None),
            get_load_balancer=self.get_lb, create_load_balancer=self.create_lb,
            update_load_balancer=self.guarded(self.update_lb),
            listeners=lambda load_balancer_id: [x for x in self.listeners.values()
                                                if x.load_balancer_id == load_balancer_id],
            create_listener=self.guarded(self.create_listener),
            update_listener=self.guarded(lambda x, **attrs: self.update(self.listeners, x, attrs)),
            pools=lambda name: [p for p in self.pools.values() if p.name == name],
            get_pool=lambda pid: self.pools[pid],
            create_pool=self.guarded(self.create_pool),
            create_health_monitor=self.guarded(self.create_monitor),
            get_health_monitor=lambda mid: self.monitors[mid],
            update_health_monitor=self.guarded(lambda m, **attrs: self.update(self.monitors, m, attrs)),
            members=lambda pool_id: [m for m in self.members.values() if m.pool_id == pool_id],
            create_member=self.guarded(self.create_member),
            delete_member=self.guarded(lambda member, pool_id: self.members.pop(member.id)),
            delete_load_balancer=self.delete_lb,
        )
        self.network = SimpleNamespace(
            find_subnet=lambda name, ignore_missing=True: self.subnet if name in ("sub1", "private-subnet") else None,
            get_subnet=lambda subnet_id: self.subnet if subnet_id == "sub1" else None,
            find_network=lambda name, ignore_missing=True: self.external if name == "public" else None,
            ips=lambda port_id: [ip for ip in self.floating.values() if ip.port_id == port_id],
            create_ip=self.create_ip,
            delete_ip=lambda ip, ignore_missing=True: self.floating.pop(ip.id, None),
        )

    def authorize(self):
        return "token"

    def new_id(self, prefix):
        return "%s%d" % (prefix, next(self.ids))

    def busy(self):
        lb = next(iter(self.lbs.values()))
        lb.provisioning_status = "PENDING_UPDATE"

    def guarded(self, fn):
        """Writes while the load balancer is PENDING_* get Octavia's 409."""
        def call(*args, **kwargs):
            lb = next(iter(self.lbs.values()))
            if lb.provisioning_status != "ACTIVE":
                self.conflicts += 1
                raise openstack.exceptions.ConflictException(message="Load Balancer %s is immutable" % lb.id)
            value = fn(*args, **kwargs)
            self.busy()
            return value
        return call

    def get_lb(self, lb_id):
        lb = self.lbs[lb_id]
        if lb.provisioning_status.startswith("PENDING"):
            lb.provisioning_status = "ACTIVE"  # one poll later, as the sweeper does
        return lb

    def create_lb(self, **kw):
        lb = SimpleNamespace(id=self.new_id("lb"), provisioning_status="PENDING_CREATE", vip_address="198.18.100.5",
                             vip_port_id="vip-port", vip_subnet_id=kw["vip_subnet_id"], name=kw["name"],
                             description=kw.get("description", ""), tags=list(kw.get("tags", [])))
        self.lbs[lb.id] = lb
        return lb

    def update_lb(self, lb, **attrs):
        for key, value in attrs.items():
            setattr(self.lbs[lb.id], key, value)
        return self.lbs[lb.id]

    @staticmethod
    def update(objects, obj, attrs):
        for key, value in attrs.items():
            setattr(objects[obj.id], key, value)
        return objects[obj.id]

    def create_listener(self, **kw):
        x = SimpleNamespace(id=self.new_id("l"), default_pool_id=None, **kw)
        self.listeners[x.id] = x
        return x

    def create_pool(self, **kw):
        pool = SimpleNamespace(id=self.new_id("p"), health_monitor_id=None, **kw)
        self.pools[pool.id] = pool
        self.listeners[kw["listener_id"]].default_pool_id = pool.id
        return pool

    def create_monitor(self, **kw):
        mon = SimpleNamespace(id=self.new_id("hm"), **kw)
        self.monitors[mon.id] = mon
        self.pools[kw["pool_id"]].health_monitor_id = mon.id
        return mon

    def create_member(self, pool_id, **kw):
        member = SimpleNamespace(id=self.new_id("m"), pool_id=pool_id, **kw)
        self.members[member.id] = member
        return member

    def create_ip(self, floating_network_id, port_id, description):
        ip = SimpleNamespace(id=self.new_id("fip"), port_id=port_id, floating_ip_address="198.18.101.50",
                             description=description)
        self.floating[ip.id] = ip
        return ip

    def delete_lb(self, lb, ignore_missing=True, cascade=False):
        assert cascade
        self.lbs.pop(lb.id, None)
        self.listeners.clear()
        self.pools.clear()
        self.members.clear()
        self.monitors.clear()


@pytest.fixture
def cloud(monkeypatch):
    fake = FakeOctavia()
    monkeypatch.setattr(os_utils.openstack, "connect", lambda **kw: fake)
    monkeypatch.setattr(os_utils.time, "sleep", lambda s: None)
    monkeypatch.setattr(octavia_lb.time, "sleep", lambda s: None)
    return fake


def run(capsys, args, check_mode=False):
    return run_module(octavia_lb.main, capsys, args, check_mode)


MEMBERS = [{"name": "demo-manager-%d" % i, "address": "198.18.100.%d" % (10 + i)} for i in (1, 2, 3)]
BASE = {"cloud": "devstack", "cluster": "demo", "vip_subnet": "private-subnet",
        "listeners": [{"port": 2376, "monitor_type": "TLS-HELLO"}], "members": MEMBERS}


def test_create_the_whole_chain_then_nothing_to_change(cloud, capsys):
    result = run(capsys, BASE)
    assert result["changed"] is True, result
    assert result["load_balancer"]["vip_address"] == "198.18.100.5"
    assert result["load_balancer"]["provisioning_status"] == "ACTIVE"
    assert result["members"] == {"2376": ["198.18.100.11", "198.18.100.12", "198.18.100.13"]}
    assert [m.type for m in cloud.monitors.values()] == ["TLS-HELLO"]
    assert {m.protocol_port for m in cloud.members.values()} == {2376}
    assert run(capsys, BASE)["changed"] is False


def test_members_follow_the_masters(cloud, capsys):
    run(capsys, BASE)
    result = run(capsys, dict(BASE, members=[*MEMBERS[:1], {"name": "demo-manager-4", "address": "198.18.100.14"}]))
    assert result["changed"] is True
    assert result["actions"] == ["remove member demo-manager-2 from port 2376",
                                 "remove member demo-manager-3 from port 2376",
                                 "add member demo-manager-4 (198.18.100.14:2376)"]
    assert sorted(m.address for m in cloud.members.values()) == ["198.18.100.11", "198.18.100.14"]


def test_conflicts_are_retried(cloud, capsys):
    run(capsys, dict(BASE, members=[]))
    cloud.busy()  # somebody else's change is still PENDING_UPDATE
    result = run(capsys, BASE)
    assert "failed" not in result, result
    assert len(cloud.members) == 3
    assert cloud.conflicts >= 1


def test_check_mode_changes_nothing(cloud, capsys):
    result = run(capsys, BASE, check_mode=True)
    assert result["changed"] is True
    assert result["actions"][0] == "create load balancer carina-demo"
    assert cloud.lbs == {}


def test_floating_ip_on_the_vip_and_absent(cloud, capsys):
    args = dict(BASE, floating_ip=True, external_network="public")
    result = run(capsys, args)
    assert result["load_balancer"]["floating_ip"] == "198.18.101.50"
    assert run(capsys, args)["changed"] is False
    gone = run(capsys, {"cloud": "devstack", "cluster": "demo", "state": "absent"})
    assert gone["changed"] is True and cloud.lbs == {} and cloud.floating == {}
    assert run(capsys, {"cloud": "devstack", "cluster": "demo", "state": "absent"})["changed"] is False


def test_allowed_cidrs_go_on_every_listener_with_the_vip_subnet(cloud, capsys):
    args = dict(BASE, allowed_cidrs=["198.19.200.0/24"], listeners=[{"port": 2376}, {"port": 6443}])
    result = run(capsys, args)
    assert result["load_balancer"]["allowed_cidrs"] == ["198.18.100.0/24", "198.19.200.0/24"]
    assert result["load_balancer"]["vip_subnet_cidr"] == "198.18.100.0/24"
    assert [x.allowed_cidrs for x in cloud.listeners.values()] == [["198.18.100.0/24", "198.19.200.0/24"]] * 2
    assert run(capsys, args)["changed"] is False
    # Narrowed, then opened again: the listeners follow, and say so.
    result = run(capsys, dict(args, allowed_cidrs=["198.19.200.7/32"]))
    assert result["changed"] is True
    assert "let 198.18.100.0/24, 198.19.200.7/32 through listener carina-demo-2376" in result["actions"]
    assert [x.allowed_cidrs for x in cloud.listeners.values()] == [["198.18.100.0/24", "198.19.200.7/32"]] * 2
    result = run(capsys, dict(args, allowed_cidrs=["0.0.0.0/0"]))
    assert "let anyone through listener carina-demo-6443" in result["actions"]
    assert [x.allowed_cidrs for x in cloud.listeners.values()] == [[], []]
    assert result["load_balancer"]["allowed_cidrs"] == []
    assert run(capsys, dict(args, allowed_cidrs=[]))["changed"] is False
    # Left out, the listeners keep what they let in (the members entry point syncs members only).
    run(capsys, dict(args, allowed_cidrs=["198.19.200.0/24"]))
    result = run(capsys, {k: v for k, v in args.items() if k != "allowed_cidrs"})
    assert result["changed"] is False
    assert result["load_balancer"]["allowed_cidrs"] == ["198.18.100.0/24", "198.19.200.0/24"]


def test_a_bad_allowed_cidr_fails_before_anything(cloud, capsys):
    result = run(capsys, dict(BASE, allowed_cidrs=["198.19.200.0/24", "198.19.200.1/24"]))
    assert result["failed"] is True
    assert result["msg"].startswith("allowed_cidrs: 198.19.200.1/24 is not a network in CIDR form")
    assert cloud.lbs == {}


def test_unknown_subnet_fails_before_anything(cloud, capsys):
    result = run(capsys, dict(BASE, vip_subnet="nope"))
    assert result["failed"] is True
    assert result["msg"] == "subnet nope not found for the VIP of carina-demo"
    assert cloud.lbs == {}


# -- the cluster's unique id --------------------------------------------------------------------
ID_A, ID_B = "a" * 32, "b" * 32
ABSENT = {"cloud": "devstack", "cluster": "demo", "state": "absent"}


def snapshot(cloud):
    """Everything the stand-in holds, as plain values, to show that a refused run changed nothing."""
    return repr([sorted((k, sorted(vars(v).items())) for k, v in objs.items())
                 for objs in (cloud.lbs, cloud.listeners, cloud.pools, cloud.monitors, cloud.members, cloud.floating)])


def test_the_id_is_a_tag_on_everything_made(cloud, capsys):
    args = dict(BASE, cluster_id=ID_A, floating_ip=True, external_network="public")
    result = run(capsys, args)
    assert result["changed"] is True, result
    tag = ["carina-cluster-id:" + ID_A]
    assert [lb.tags for lb in cloud.lbs.values()] == [tag]
    for objs in (cloud.listeners, cloud.pools, cloud.monitors, cloud.members):
        assert objs and all(obj.tags == tag for obj in objs.values())
    assert [ip.description for ip in cloud.floating.values()] == ["carina demo VIP id " + ID_A]
    assert run(capsys, args)["changed"] is False


@pytest.mark.parametrize("check_mode", [False, True])
@pytest.mark.parametrize("args", [dict(BASE, cluster_id=ID_B), dict(ABSENT, cluster_id=ID_B)],
                         ids=["present", "absent"])
def test_another_id_is_never_adopted_changed_nor_deleted(cloud, capsys, args, check_mode):
    run(capsys, dict(BASE, cluster_id=ID_A, members=MEMBERS[:1], floating_ip=True, external_network="public"))
    before = snapshot(cloud)
    result = run(capsys, args, check_mode=check_mode)
    assert result["failed"] is True, result
    assert result["msg"] == (
        "cluster demo on the cloud has id %s (load balancer carina-demo carries it), not this state's %s: it was "
        "made from another state folder. Nothing was changed. Choose another name, or delete it from the state "
        "folder that made it" % (ID_A, ID_B))
    assert result["other_id"] == ID_A and result["actions"] == []
    assert snapshot(cloud) == before


def test_a_load_balancer_made_before_ids_is_adopted_and_tagged(cloud, capsys):
    run(capsys, BASE)  # no cluster_id: as an older release made it
    lb = next(iter(cloud.lbs.values()))
    lb.tags = ["kept"]
    before = snapshot(cloud)
    args = dict(BASE, cluster_id=ID_A)
    check = run(capsys, args, check_mode=True)
    assert check["changed"] is True
    assert check["actions"] == ["tag load balancer carina-demo with the cluster's id"]
    assert snapshot(cloud) == before
    result = run(capsys, args)
    assert result["changed"] is True and result["actions"] == check["actions"]
    assert lb.tags == ["kept", "carina-cluster-id:" + ID_A]
    assert lb.provisioning_status == "ACTIVE"
    assert run(capsys, args)["changed"] is False
    assert run(capsys, dict(args, cluster_id=ID_B))["failed"] is True
    gone = run(capsys, dict(ABSENT, cluster_id=ID_A))
    assert gone["changed"] is True and cloud.lbs == {}


def test_absent_with_the_id_deletes_a_load_balancer_made_before_ids(cloud, capsys):
    run(capsys, BASE)
    gone = run(capsys, dict(ABSENT, cluster_id=ID_A))
    assert gone["changed"] is True and cloud.lbs == {}


def test_with_no_id_known_a_load_balancer_with_an_id_is_refused_until_its_id_is_given(cloud, capsys):
    run(capsys, dict(BASE, cluster_id=ID_A))
    for args in (BASE, ABSENT):
        refused = run(capsys, args)
        assert refused["failed"] and refused["other_id"] == ID_A, refused
        assert "this run knows no id" in refused["msg"] and f"-e carina_cluster_id={ID_A}" in refused["msg"]
    assert [lb.tags for lb in cloud.lbs.values()] == [["carina-cluster-id:" + ID_A]]
    gone = run(capsys, dict(ABSENT, cluster_id=ID_A))
    assert gone["changed"] is True and cloud.lbs == {}


def test_a_lost_member_is_passed_over_fast_and_older_settings_are_brought_to_it(cloud, capsys):
    run(capsys, BASE)
    (listener,) = cloud.listeners.values()
    (monitor,) = cloud.monitors.values()
    assert listener.timeout_member_connect == 1000
    assert (monitor.delay, monitor.timeout, monitor.max_retries, monitor.max_retries_down) == (2, 2, 2, 2)
    # As an earlier release made them: Octavia's defaults on the listener, a slower monitor.
    listener.timeout_member_connect = 5000
    monitor.delay, monitor.timeout, monitor.max_retries_down = 5, 3, 3
    res = run(capsys, BASE, check_mode=True)
    assert res["changed"] is True, res
    assert listener.timeout_member_connect == 5000 and monitor.delay == 5
    res = run(capsys, BASE)
    assert res["changed"] is True, res
    actions = " ".join(res["actions"])
    assert "member connect timeout" in actions and "check timing" in actions, actions
    assert listener.timeout_member_connect == 1000
    assert (monitor.delay, monitor.timeout, monitor.max_retries, monitor.max_retries_down) == (2, 2, 2, 2)
    res = run(capsys, BASE)
    assert res["changed"] is False, res
