# Copyright: rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Tests of the planning rules of a cluster (module_utils/spec.py), against the real Swarm contract."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import ipaddress

import pytest
import yaml

from ansible_collections.rax.carina.plugins.module_utils import spec

COLLECTION = Path(spec.__file__).resolve().parents[2]
SWARM_CONTRACT = COLLECTION / "roles" / "coe_swarm" / "meta" / "contract.yml"


def _load_swarm():
    with open(SWARM_CONTRACT) as handle:
        return yaml.safe_load(handle.read())


SWARM = _load_swarm()


@pytest.fixture
def swarm():
    """A fresh copy of the Swarm contract, free to change in a test."""
    return copy.deepcopy(SWARM)


def m(n, cluster="demo"):
    return "%s-manager-%d" % (cluster, n)


def w(n, cluster="demo"):
    return "%s-worker-%d" % (cluster, n)


def record(masters=1, nodes=1, **extra):
    """A current-schema record of cluster demo with hosts numbered from 1."""
    out = dict(schema_version=1, name="demo", coe="swarm", contract_version=1, provider="local",
               masters=masters, nodes=nodes, master_hosts=[m(i) for i in range(1, masters + 1)],
               worker_hosts=[w(i) for i in range(1, nodes + 1)], removing_masters=[], removing_workers=[],
               subnet="198.18.10.0/24")
    out.update(extra)
    return out


def good_spec(**extra):
    out = dict(name="demo", coe="swarm", operation="create", masters=3, nodes=2, provider="local")
    out.update(extra)
    return out


LB_HOST = dict(lb_hosts=["lb1"])
LB_VIP = dict(vip="198.18.0.10")


def planned(spec_in, recorded=None, contract=None):
    return spec.plan(spec_in, contract or SWARM, recorded)


def problems_of(spec_in, recorded=None, contract=None):
    """The problems plan() reports (after filling the spec, as every caller does)."""
    with pytest.raises(spec.SpecError) as info:
        planned(spec_in, recorded, contract)
    return info.value.problems


# ------------------------------------------------------------------------------------------
# The real contract, as these tests read it
# ------------------------------------------------------------------------------------------


MISSING = ("cluster demo was not found in its state folder; create it first (a job that starts with no state "
           "takes it from where the cluster keeps it with carina_state_from_store=true)")


def test_swarm_contract_words_and_rules():
    assert spec.word(SWARM, "master") == "manager"
    assert spec.word(SWARM, "worker") == "worker"
    assert SWARM["masters"] == {"min": 1, "max": 7, "odd": True, "default": 1}
    assert SWARM["workers"] == {"min": 0, "max": 250, "default": 1}
    assert SWARM["operations"] == ["create", "scale", "delete"]


# ------------------------------------------------------------------------------------------
# Names
# ------------------------------------------------------------------------------------------

VALID_NAMES = ["a", "z", "demo", "a1", "a-b", "web-01", "x9-y8-z7", "a" * 40, "a" + "-b" * 19 + "c", "abc" * 13 + "d"]
INVALID_NAMES = [
    "", "a" * 41, "b" + "0" * 40, "demo\n", "demo ", " demo", "\ndemo", "demo\r", "demo-", "-demo", "a--b", "a---b",
    "Demo", "DEMO", "deMo", "1demo", "0", "9-a", "de_mo", "de.mo", "de mo", "demo!", "dém", "demo\x00",
]


@pytest.mark.parametrize("name", VALID_NAMES)
def test_valid_names(name):
    assert len(name) <= 40
    assert spec.name_problems(name) == []
    assert spec.valid_name(name)


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_names(name):
    problems = spec.name_problems(name)
    assert len(problems) == 1
    assert repr(name) in problems[0]
    assert spec.NAME_RULE in problems[0]
    assert not spec.valid_name(name)


@pytest.mark.parametrize("name", [None, 5, 1.0, b"demo", ["demo"], {"demo": 1}, True])
def test_names_that_are_not_strings(name):
    assert spec.name_problems(name) == ["name %r: %s" % (name, spec.NAME_RULE)]


def test_name_length_bounds():
    assert spec.NAME_MAX == 40
    assert spec.valid_name("a" * 40)
    assert not spec.valid_name("a" * 41)
    assert spec.valid_name("a" * 39 + "1")
    assert not spec.valid_name("a" * 39 + "-")


def test_name_rule_text():
    assert "1 to 40" in spec.NAME_RULE
    assert "not ending with '-'" in spec.NAME_RULE


def _random_names(alphabet, count=3000, seed=20260101):
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    for _index in range(count):
        yield "".join(rng.choice(alphabet) for _char in range(rng.randint(0, 43)))


def _valid_names():
    """The named valid names and many random ones, long ones included."""
    return VALID_NAMES + [n for n in _random_names("abz09-") if spec.valid_name(n)]


def test_random_names_include_many_valid_ones():
    names = _valid_names()
    assert len(names) > 500
    assert any(len(n) == 40 for n in names)


def test_every_valid_name_is_a_dns_label_and_makes_host_names():
    for name in _valid_names():
        assert spec.DNS_LABEL_RE.fullmatch(name), name
        assert spec.HOST_RE.fullmatch(name), name
        for role in ("master", "worker", "lb"):
            for index in (1, 10, 99):
                host = spec.host_name(name, SWARM, role, index)
                assert len(host) <= 63, host
                assert spec.DNS_LABEL_RE.fullmatch(host), host
                assert spec.HOST_RE.fullmatch(host), host


def test_longest_name_makes_host_names_within_63():
    name = "a" * 40
    assert spec.host_name(name, SWARM, "master", 10) == name + "-manager-10"
    assert len(name + "-manager-10") <= 63
    assert spec.host_name(name, SWARM, "lb", 0) == name + "-lb"


@pytest.mark.parametrize("name", [*INVALID_NAMES, None, 5])
def test_invalid_names_and_non_strings_are_not_valid(name):
    assert not spec.valid_name(name)


def test_random_strings_agree_with_the_rule():
    """The regular expression and a plain reading of the rule agree on every string."""
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789-")
    for name in [*_random_names("abz09-A_.\n "), *_random_names("abz09-", seed=7)]:
        plain = (1 <= len(name) <= 40 and set(name) <= allowed and name[0].isalpha() and not name.endswith("-")
                 and "--" not in name)
        assert spec.valid_name(name) == plain, repr(name)


def test_plan_refuses_a_bad_name():
    problems = problems_of(good_spec(name="demo\n"))
    assert problems == ["name 'demo\\n': %s" % spec.NAME_RULE]


# ------------------------------------------------------------------------------------------
# Host names
# ------------------------------------------------------------------------------------------


def test_host_name_words():
    assert spec.host_name("demo", SWARM, "master", 1) == "demo-manager-1"
    assert spec.host_name("demo", SWARM, "worker", 12) == "demo-worker-12"
    assert spec.host_name("demo", SWARM, "lb", 7) == "demo-lb"


def test_host_names_of_other_words(swarm):
    swarm["roles"]["master"]["word"] = "control-plane"
    swarm["roles"]["worker"]["word"] = "agent"
    assert spec.host_names("k", swarm, "master", 2) == ["k-control-plane-1", "k-control-plane-2"]
    assert spec.host_names("k", swarm, "worker", 1) == ["k-agent-1"]


def test_host_names_start_at_one():
    assert spec.host_names("demo", SWARM, "worker", 3) == [w(1), w(2), w(3)]
    assert spec.host_names("demo", SWARM, "worker", 0) == []


def test_host_names_continue_after_the_highest_used():
    existing = [w(1), w(7), w(3)]
    assert spec.host_names("demo", SWARM, "worker", 2, existing) == [w(8), w(9)]


def test_host_names_ignore_names_of_other_roles_clusters_and_shapes():
    existing = [m(20), w(9, "other"), "demo-worker-x", "demo-worker-", "demo-worker-3b", "demo-worker-10-1",
                "xdemo-worker-50"]
    assert spec.host_names("demo", SWARM, "worker", 1, existing) == [w(1)]
    # A cluster whose name is a prefix of another's does not read the other's hosts.
    assert spec.host_names("demo", SWARM, "worker", 1, [w(5, "demo-x")]) == [w(1)]


# ------------------------------------------------------------------------------------------
# Counts
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("masters", [1, 3, 5, 7])
@pytest.mark.parametrize("nodes", [0, 1, 2, 100, 250])
def test_counts_within_the_contract(masters, nodes):
    assert spec.count_problems(SWARM, masters, nodes) == []


@pytest.mark.parametrize(("masters", "hint"), [(2, "(use 1 or 3)"), (4, "(use 3 or 5)"), (6, "(use 5 or 7)"),
                                               (8, "(use 7)")])
def test_even_masters_get_a_hint(masters, hint):
    problems = spec.count_problems(SWARM, masters, 1)
    assert problems == ["masters=%d: the number of managers must be odd, from 1 to 7, so that a majority survives "
                        "failures %s" % (masters, hint)]


def test_two_masters_suggest_one_or_three():
    [problem] = spec.count_problems(SWARM, 2, 1)
    assert problem.endswith("(use 1 or 3)")
    assert "managers" in problem


@pytest.mark.parametrize("masters", [0, 9, 10, -1, -2, 100])
def test_masters_out_of_range(masters):
    [problem] = spec.count_problems(SWARM, masters, 1)
    assert problem.startswith("masters=%d: the number of managers must be odd, from 1 to 7" % masters)
    assert "(use" not in problem


@pytest.mark.parametrize("masters", ["3", 3.0, 1.5, None, [3], True, False])
def test_masters_not_an_int(masters):
    [problem] = spec.count_problems(SWARM, masters, 1)
    assert problem.startswith("masters=%s: " % (masters,))
    assert "(use" not in problem


@pytest.mark.parametrize("nodes", [-1, -100, 251, 1000])
def test_workers_out_of_range(nodes):
    assert spec.count_problems(SWARM, 1, nodes) == [
        "nodes=%d: the number of workers must be from 0 to 250" % nodes]


@pytest.mark.parametrize("nodes", ["2", 2.0, None, True, [1]])
def test_workers_not_an_int(nodes):
    assert spec.count_problems(SWARM, 1, nodes) == [
        "nodes=%s: the number of workers must be from 0 to 250" % (nodes,)]


def test_both_counts_wrong_give_two_problems():
    problems = spec.count_problems(SWARM, 2, -1)
    assert len(problems) == 2
    assert problems[0].startswith("masters=2")
    assert problems[1].startswith("nodes=-1")


def test_count_rules_without_odd(swarm):
    swarm["masters"] = {"min": 1, "max": 5}
    swarm["roles"]["master"]["plural"] = "control planes"
    assert spec.count_problems(swarm, 2, 0) == []
    assert spec.count_problems(swarm, 4, 0) == []
    [problem] = spec.count_problems(swarm, 6, 0)
    assert problem == "masters=6: the number of control planes must be from 1 to 5"


def test_count_rule_defaults(swarm):
    swarm["masters"] = {}
    swarm["workers"] = {}
    assert spec.count_problems(swarm, 7, 250) == []
    assert spec.count_problems(swarm, 8, 0)[0].startswith("masters=8: the number of managers must be from 1 to 7")
    assert spec.count_problems(swarm, 1, 251) == ["nodes=251: the number of workers must be from 0 to 250"]


def test_worker_bounds_of_a_contract(swarm):
    swarm["workers"] = {"min": 1, "max": 3}
    assert spec.count_problems(swarm, 1, 0) == ["nodes=0: the number of workers must be from 1 to 3"]
    assert spec.count_problems(swarm, 1, 3) == []


def test_plan_refuses_bad_counts():
    problems = problems_of(good_spec(masters=2, nodes=-1))
    assert len(problems) == 2
    assert "(use 1 or 3)" in problems[0]
    assert problems[1].startswith("nodes=-1")


def test_plan_refuses_a_bool_count():
    problems = problems_of(good_spec(masters=True))
    assert problems[0].startswith("masters=True")


# ------------------------------------------------------------------------------------------
# Operations
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["create", "scale", "delete"])
def test_operations_of_the_contract(operation):
    assert spec.operation_problems(SWARM, operation) == []


def test_operation_not_in_the_contract():
    assert spec.operation_problems(SWARM, "upgrade") == [
        "upgrade is not supported by coe swarm (it supports: create, scale, delete)"]


def test_operation_a_contract_leaves_out(swarm):
    swarm["operations"] = ["create", "delete"]
    problems = problems_of(good_spec(operation="scale"), record(), swarm)
    assert "scale is not supported by coe swarm (it supports: create, delete)" in problems


def test_contract_without_operations(swarm):
    del swarm["operations"]
    assert spec.operation_problems(swarm, "create") == ["create is not supported by coe swarm (it supports: )"]


def test_unknown_operation_stops_the_check():
    problems = spec.check(good_spec(operation="upgrade", masters=2), SWARM)
    assert problems == ["operation 'upgrade': choose one of create, scale, delete"]


def test_unknown_operation_with_a_bad_name():
    problems = spec.check(good_spec(name="Bad", operation="upgrade"), SWARM)
    assert len(problems) == 2
    assert problems[0].startswith("name 'Bad'")


def test_unknown_coe():
    problems = spec.check(good_spec(coe="k8s", coes=["swarm"]), None)
    assert problems == ["coe 'k8s' is not supported; choose one of: swarm"]
    assert spec.check(good_spec(coe="k8s"), None) == ["coe 'k8s' is not supported; choose one of: none installed"]


def test_unknown_coe_through_plan():
    with pytest.raises(spec.SpecError) as info:
        spec.plan(good_spec(coe="k8s", coes=["swarm"]), None)
    assert info.value.problems == ["coe 'k8s' is not supported; choose one of: swarm"]


# ------------------------------------------------------------------------------------------
# Subnet
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("subnet", ["nonsense", "198.18.20.0/33", "198.18.20/24", "300.0.0.0/24", "198.18.20.0/x",
                                    "/24"])
def test_subnet_not_cidr(subnet):
    [problem] = spec.subnet_problems(subnet, 1)
    assert problem.startswith("subnet %r is not an IPv4 network in CIDR form" % subnet)
    assert "198.18.10.0/24" in problem


@pytest.mark.parametrize("subnet", ["fd00::/64", "2001:db8::/32", "::/0"])
def test_subnet_ipv6(subnet):
    assert spec.subnet_problems(subnet, 1) == ["subnet %s: use an IPv4 network" % subnet]


def test_subnet_with_host_bits():
    [problem] = spec.subnet_problems("198.18.10.1/24", 1)
    assert problem.startswith("subnet '198.18.10.1/24' is not an IPv4 network in CIDR form")
    assert "host bits" in problem


@pytest.mark.parametrize(("subnet", "room"), [("198.18.20.0/24", 253), ("198.18.20.0/29", 5), ("198.18.20.0/30", 1),
                                              ("198.18.20.0/31", 0), ("198.18.20.0/32", 0), ("198.18.0.0/16", 65533)])
def test_subnet_room(subnet, room):
    assert spec.subnet_problems(subnet, room) == []
    assert spec.subnet_problems(subnet, room + 1) == [
        "subnet %s has room for %d hosts, the cluster needs %d: use a larger subnet" % (subnet, room, room + 1)]


def test_default_subnet_room():
    assert spec.subnet_problems("", 253) == []
    assert spec.subnet_problems(None, 253) == []
    assert spec.subnet_problems("", 254) == [
        "the cluster needs 254 hosts, more than the 253 a default /24 subnet holds: give a larger subnet"]


def test_default_subnet_too_small_for_300_workers():
    [problem] = spec.subnet_problems("", 1 + 300 + 1)
    assert "302 hosts" in problem
    assert "default /24" in problem


def test_check_counts_masters_workers_and_lb_in_the_subnet():
    # 3 masters + 2 workers + the load balancer = 6 hosts; a /29 holds 5.
    problems = problems_of(good_spec(subnet="198.18.20.0/29"))
    assert problems == ["subnet 198.18.20.0/29 has room for 5 hosts, the cluster needs 6: use a larger subnet"]
    assert planned(good_spec(subnet="198.18.20.0/28"))["subnet"] == "198.18.20.0/28"
    assert planned(good_spec(masters=1, nodes=3, subnet="198.18.20.0/29"))["worker_hosts"] == [w(1), w(2), w(3)]


def test_check_default_subnet_is_too_small_for_the_largest_cluster():
    problems = problems_of(good_spec(masters=7, nodes=250))
    assert problems == ["the cluster needs 258 hosts, more than the 253 a default /24 subnet holds: give a larger "
                        "subnet"]
    assert len(planned(good_spec(masters=7, nodes=250, subnet="198.18.0.0/23"))["worker_hosts"]) == 250
    assert len(planned(good_spec(masters=1, nodes=250))["worker_hosts"]) == 250  # 252 hosts fit


def test_check_uses_the_recorded_subnet():
    rec = record(masters=1, nodes=2, subnet="198.18.20.0/30")
    problems = problems_of(good_spec(operation="scale", masters=1, nodes=2), rec)
    assert problems == ["subnet 198.18.20.0/30 has room for 1 hosts, the cluster needs 4: use a larger subnet"]


def test_subnet_room_counts_hosts_leaving_during_a_scale():
    # 3 managers and 4 workers stay up while 2 more workers are still leaving: 3 + 4 + 2 + lb = 10.
    rec = record(masters=3, nodes=4, removing_workers=[w(5), w(6)], subnet="")
    spec_in = good_spec(operation="scale", masters=1, nodes=2, subnet="198.18.20.0/29")
    assert problems_of(spec_in, rec) == [
        "subnet 198.18.20.0/29 has room for 5 hosts, the cluster needs 10: use a larger subnet"]
    spec_in["subnet"] = "198.18.20.0/28"
    out = planned(spec_in, rec)
    assert out["removing_masters"] == [m(2), m(3)]
    assert out["removing_workers"] == [w(5), w(6), w(3), w(4)]  # those already leaving first


def test_subnet_room_counts_leaving_masters():
    rec = record(masters=1, nodes=1, removing_masters=[m(2), m(3)], subnet="198.18.20.0/29")
    # 1 manager + 2 leaving + 1 worker + lb = 5: fits; one more worker does not.
    assert planned(good_spec(operation="scale", masters=1, nodes=1, subnet=""), rec)["removing_masters"] == [m(2), m(3)]
    problems = problems_of(good_spec(operation="scale", masters=1, nodes=2, subnet=""), rec)
    assert problems == ["subnet 198.18.20.0/29 has room for 5 hosts, the cluster needs 6: use a larger subnet"]


def test_subnet_room_counts_named_workers_removed_while_others_come():
    # Worker 1 leaves while worker 4 comes: 1 manager + 4 workers + lb = 6 hosts at once, more than a /29.
    rec = record(masters=1, nodes=3, subnet="198.18.20.0/29")
    problems = problems_of(good_spec(operation="scale", masters=1, nodes=3, remove=[w(1)], subnet=""), rec)
    assert problems == ["subnet 198.18.20.0/29 has room for 5 hosts, the cluster needs 6: use a larger subnet"]
    # Without a new worker it fits: 1 + 3 + lb.
    out = planned(good_spec(operation="scale", masters=1, nodes=2, remove=[w(1)], subnet=""), rec)
    assert out["worker_hosts"] == [w(2), w(3)]


def test_subnet_of_other_providers_is_only_checked_for_shape():
    options = dict(server_type="vm", master_server_type="vm")
    out = planned(good_spec(provider="openstack", openstack=options, masters=7, nodes=250))
    assert len(out["worker_hosts"]) == 250
    problems = problems_of(good_spec(provider="openstack", subnet="fd00::/64"))
    assert problems == ["subnet fd00::/64: use an IPv4 network"]
    problems = problems_of(good_spec(provider="openstack", subnet="198.18.20.1/24"))
    assert len(problems) == 1
    assert "host bits" in problems[0]


def test_subnet_not_checked_when_counts_are_wrong():
    problems = problems_of(good_spec(masters="three", subnet="198.18.20.0/32"))
    assert len(problems) == 1
    assert problems[0].startswith("masters=three")


# ------------------------------------------------------------------------------------------
# SANs
# ------------------------------------------------------------------------------------------

GOOD_SANS = ["198.18.0.1", "127.0.0.1", "fd00::1", "::1", "2001:db8::10", "api.example.com", "localhost",
             "*.example.com", "*.apps.example.com", "A.Example.COM", "xn--bcher-kva.example", "a" * 63 + ".com",
             "1-2.example", ".".join(["a" * 63] * 3) + "." + "a" * 61]
BAD_SANS = ["a b", "x/y", "", "foo..bar", "-a.com", "a-.com", "a" * 64 + ".com", "example.com.", ".example.com",
            "*", "*.", "*.*.example.com", "a.*.com", "exa_mple.com", "http://example.com", "example.com:443",
            ".".join(["a" * 63] * 4), " example.com", "example.com\n"]


@pytest.mark.parametrize("san", GOOD_SANS)
def test_good_sans(san):
    assert spec.san_ok(san)
    assert spec.san_problems([san]) == []


@pytest.mark.parametrize("san", BAD_SANS)
def test_bad_sans(san):
    assert not spec.san_ok(san)
    assert spec.san_problems([san]) == ["extra SAN %r is neither an IP address nor a DNS name" % (san,)]


@pytest.mark.parametrize("san", [None, 5, 1.5, ["a.com"], {"a": 1}, b"a.com"])
def test_sans_that_are_not_strings(san):
    assert spec.san_problems([san]) == ["extra SAN %r is neither an IP address nor a DNS name" % (san,)]


def test_san_label_of_63_is_the_limit():
    assert spec.san_ok("a" * 63 + ".example.com")
    assert not spec.san_ok("a" * 64 + ".example.com")
    assert not spec.san_ok("example." + "a" * 64)


def test_no_sans():
    assert spec.san_problems(None) == []
    assert spec.san_problems([]) == []


def test_every_bad_san_is_reported():
    problems = spec.san_problems(["ok.example.com", "a b", "198.18.20.1", "x/y", ""])
    assert problems == ["extra SAN 'a b' is neither an IP address nor a DNS name",
                        "extra SAN 'x/y' is neither an IP address nor a DNS name",
                        "extra SAN '' is neither an IP address nor a DNS name"]


def test_plan_keeps_the_sans_and_refuses_bad_ones():
    assert planned(good_spec(extra_sans=["*.example.com", "fd00::1"]))["extra_sans"] == ["*.example.com", "fd00::1"]
    assert problems_of(good_spec(extra_sans=["foo..bar"])) == [
        "extra SAN 'foo..bar' is neither an IP address nor a DNS name"]


# ------------------------------------------------------------------------------------------
# Provider options
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["local", "openstack", "static"])
def test_known_providers(provider):
    options = spec.fill_openstack({}, {}) if provider == "openstack" else {}
    assert spec.provider_problems(provider, options) == []


@pytest.mark.parametrize("provider", ["aws", "", None, "Local", "docker"])
def test_unknown_provider(provider):
    assert spec.provider_problems(provider, {}) == [
        "provider %r is not supported; choose one of: local, openstack, static" % (provider,)]


def test_unknown_provider_through_plan():
    assert problems_of(good_spec(provider="aws")) == [
        "provider 'aws' is not supported; choose one of: local, openstack, static"]


@pytest.mark.parametrize("key", ["server_type", "master_server_type"])
@pytest.mark.parametrize("value", ["container", "VM", "", None, 1])
def test_bad_server_types(key, value):
    options = spec.fill_openstack({}, {})
    options[key] = value
    assert spec.provider_problems("openstack", options) == ["%s %r: choose vm (Nova) or bm (Ironic)" % (key, value)]


@pytest.mark.parametrize("value", ["vm", "bm"])
def test_good_server_types(value):
    options = spec.fill_openstack(dict(server_type=value, master_server_type=value), {})
    assert spec.provider_problems("openstack", options) == []


def test_server_types_missing():
    assert spec.provider_problems("openstack", {}) == ["master_server_type None: choose vm (Nova) or bm (Ironic)",
                                                       "server_type None: choose vm (Nova) or bm (Ironic)"]


def test_unknown_openstack_options():
    options = spec.fill_openstack({}, {})
    options.update(flavour="m1.large", zone="nova")
    [problem] = spec.provider_problems("openstack", options)
    assert problem == "unknown openstack options flavour, zone; known: %s" % ", ".join(sorted(spec.OPENSTACK_DEFAULTS))


def test_unknown_openstack_option_through_plan():
    problems = problems_of(good_spec(provider="openstack", openstack=dict(flavour="m1.large", server_type="x")))
    assert problems[0] == "server_type 'x': choose vm (Nova) or bm (Ironic)"
    assert problems[1].startswith("unknown openstack options flavour; known: ")


def test_openstack_options_of_other_providers_are_ignored():
    assert spec.provider_problems("local", {"flavour": 1}) == []
    assert planned(good_spec(openstack={"flavour": 1}))["openstack"] == {}


def test_fill_openstack_defaults():
    out = spec.fill_openstack(None, None)
    expected = dict(spec.OPENSTACK_DEFAULTS)
    expected["master_flavor"] = "m1.small"
    assert out == expected


def test_fill_openstack_from_the_record_then_given():
    recorded = dict(openstack=dict(cloud="rax", flavor="m1.large", server_type="bm", fixed_network="net"))
    out = spec.fill_openstack(dict(flavor="m1.xlarge", fixed_network=None, floating_ip_enabled=True), recorded)
    assert out["cloud"] == "rax"
    assert out["flavor"] == "m1.xlarge"
    assert out["master_flavor"] == "m1.xlarge"
    assert out["server_type"] == "bm"
    assert out["fixed_network"] == "net"  # None means left out
    assert out["floating_ip_enabled"] is True
    assert out["master_server_type"] == "vm"


def test_fill_openstack_keeps_a_given_false_and_unknown_options():
    out = spec.fill_openstack(dict(floating_ip_enabled=False, extra="x", gone=None),
                              dict(openstack=dict(floating_ip_enabled=True)))
    assert out["floating_ip_enabled"] is False
    assert out["extra"] == "x"
    assert "gone" not in out


def test_fill_openstack_master_flavor():
    assert spec.fill_openstack(dict(flavor="f", master_flavor="mf"), {})["master_flavor"] == "mf"
    assert spec.fill_openstack(dict(flavor="f"), {})["master_flavor"] == "f"


def test_fill_openstack_does_not_change_its_input():
    given = dict(flavor="f", extra="x")
    recorded = dict(openstack=dict(cloud="c"))
    before = copy.deepcopy((given, recorded))
    spec.fill_openstack(given, recorded)
    assert (given, recorded) == before


# ------------------------------------------------------------------------------------------
# Static hosts
# ------------------------------------------------------------------------------------------


def test_good_static_hosts():
    hosts = dict(master=["h1", "10-0-0-1", "a" * 63], worker=["node", "0"])
    assert spec.static_problems(hosts, LB_HOST) == []
    assert spec.static_problems({}, LB_HOST) == []
    assert spec.static_problems(dict(master=None, worker=None), LB_VIP) == []


@pytest.mark.parametrize("name", ["Node1", "a_b", "-x", "x-", "", "a" * 64, "h.example.com", "h 1", "h1\n", 5, None])
def test_bad_static_host_names(name):
    problems = spec.static_problems(dict(master=["h1"], worker=[name]), LB_HOST)
    assert problems == ["host %r: inventory names of static hosts must be host names (lower-case letters, digits "
                        "and '-')" % (name,)]


def test_a_host_in_both_roles():
    problems = spec.static_problems(dict(master=["h1", "h2"], worker=["h2", "h1", "h3"]), LB_HOST)
    assert problems == ["hosts h1, h2 are named both master and worker; give each host one role"]


def test_every_static_problem_at_once():
    problems = spec.static_problems(dict(master=["H1", "h2"], worker=["h2", "x_y"]), {})
    assert len(problems) == 4
    assert problems[0].startswith("static hosts need a load balancer")
    assert "both master and worker" in problems[-1]


def test_static_hosts_need_a_load_balancer():
    [problem] = spec.static_problems(dict(master=["h1"]), {})
    assert problem.startswith("static hosts need a load balancer: name one host in the inventory's lb group")
    [problem] = spec.static_problems(dict(master=["h1"]), dict(lb_hosts=["lb1", "lb2"]))
    assert problem == "name one load balancer host, not 2 (lb1, lb2)"


def test_static_load_balancer_host_or_vip_not_both():
    [problem] = spec.static_problems(dict(master=["h1"]), dict(vip="198.18.0.10", lb_hosts=["lb1"]))
    assert problem == "give either a load balancer host (lb1) or a virtual IP (198.18.0.10), not both"


@pytest.mark.parametrize(("vip", "problem"), [("fd00::10", "vip fd00::10: use an IPv4 address"),
                                              ("lb.example.com", "vip 'lb.example.com' is not an IP address"),
                                              ("198.18.0.0/24", "vip '198.18.0.0/24' is not an IP address")])
def test_static_bad_vip(vip, problem):
    assert spec.static_problems(dict(master=["h1"]), dict(vip=vip)) == [problem]


def test_static_load_balancer_host_is_not_a_member():
    problems = spec.static_problems(dict(master=["h1"], worker=["lb1"]), LB_HOST)
    assert problems == ["the load balancer host must not be a master or worker; give a vip to run it on the masters"]


def static_spec(master, worker, **extra):
    out = dict(name="demo", coe="swarm", provider="static", inventory_hosts=dict(master=master, worker=worker),
               static=dict(LB_HOST))
    out.update(extra)
    return out


def test_static_hosts_through_plan():
    out = planned(static_spec(["h1"], ["h2", "h3"]))
    assert (out["masters"], out["nodes"]) == (1, 2)
    assert out["master_hosts"] == ["h1"]
    assert out["worker_hosts"] == ["h2", "h3"]
    assert out["adding"] == ["h1", "h2", "h3"]
    assert out["lb"] == "demo-lb"
    assert out["static"] == dict(vip="", lb_hosts=["lb1"], interface="")
    assert "inventory_hosts" not in out


def test_static_hosts_are_counted_by_the_contract():
    problems = problems_of(static_spec(["h1", "h2"], ["h1"]))
    assert problems == ["hosts h1 are named both master and worker; give each host one role",
                        "masters=2: the number of managers must be odd, from 1 to 7, so that a majority survives "
                        "failures (use 1 or 3)"]


def test_static_without_inventory_hosts():
    problems = problems_of(dict(name="demo", provider="static", static=dict(LB_HOST)))
    assert problems == ["masters=0: the number of managers must be odd, from 1 to 7, so that a majority survives "
                        "failures"]


# ------------------------------------------------------------------------------------------
# fill()
# ------------------------------------------------------------------------------------------


def test_fill_defaults_from_the_contract():
    out = spec.fill(dict(name="demo"), SWARM)
    assert out == dict(name="demo", operation="create", remove=[], extra_sans=[], authorized_keys=[],
                       provider="local", masters=1, nodes=1, openstack={}, static={},
                       coe_options={"address_pool": "198.19.128.0/18", "address_pool_mask": 24})
    # Users' keys given once are kept from the record; given again, the new list wins.
    assert spec.fill(dict(name="demo"), SWARM, {"authorized_keys": ["ssh-ed25519 AAAA a"]})["authorized_keys"] == [
        "ssh-ed25519 AAAA a"]
    assert spec.fill(dict(name="demo", authorized_keys=["ssh-rsa BBBB b"]), SWARM,
                     {"authorized_keys": ["ssh-ed25519 AAAA a"]})["authorized_keys"] == ["ssh-rsa BBBB b"]


def test_fill_defaults_of_another_contract(swarm):
    swarm["masters"]["default"] = 3
    swarm["workers"]["default"] = 0
    out = spec.fill(dict(name="demo"), swarm)
    assert (out["masters"], out["nodes"]) == (3, 0)
    del swarm["masters"]["default"]
    del swarm["workers"]["default"]
    out = spec.fill(dict(name="demo"), swarm)
    assert (out["masters"], out["nodes"]) == (1, 1)


def test_fill_counts_from_the_record():
    out = spec.fill(dict(name="demo", operation="scale"), SWARM, record(masters=3, nodes=5, provider="openstack"))
    assert (out["masters"], out["nodes"]) == (3, 5)
    assert out["provider"] == "openstack"


def test_fill_keeps_given_counts():
    out = spec.fill(dict(name="demo", masters=5, nodes=0), SWARM, record(masters=3, nodes=5))
    assert (out["masters"], out["nodes"]) == (5, 0)


def test_fill_keeps_a_record_of_no_workers():
    out = spec.fill(dict(name="demo"), SWARM, record(masters=1, nodes=0))
    assert out["nodes"] == 0


def test_fill_nodes_minus_remove():
    out = spec.fill(dict(name="demo", operation="scale", remove=[w(2), w(4)]), SWARM, record(nodes=5))
    assert out["nodes"] == 3
    assert out["remove"] == [w(2), w(4)]


def test_fill_nodes_minus_remove_counts_each_known_worker_once():
    rec = record(nodes=3, removing_workers=[w(7)])
    # A name given twice, a worker already leaving and a stranger do not lower the count further.
    out = spec.fill(dict(name="demo", operation="scale", remove=[w(2), w(2), w(7), "stranger"]), SWARM, rec)
    assert out["remove"] == [w(2), w(7), "stranger"]
    assert out["nodes"] == 2


def test_fill_nodes_never_negative():
    out = spec.fill(dict(name="demo", operation="scale", remove=[w(1), w(2)]), SWARM, record(nodes=2))
    assert out["nodes"] == 0


def test_fill_provider():
    assert spec.fill(dict(name="demo", provider="static"), SWARM)["provider"] == "static"
    assert spec.fill(dict(name="demo", provider=None), SWARM, dict(provider="openstack"))["provider"] == "openstack"
    assert spec.fill(dict(name="demo", provider=""), SWARM)["provider"] == "local"


def test_fill_static_counts_from_hosts():
    out = spec.fill(static_spec(["a"], None, masters=7, nodes=7), SWARM)
    assert (out["masters"], out["nodes"]) == (1, 0)
    assert out["hosts"] == dict(master=["a"], worker=[])
    assert "inventory_hosts" not in out


def test_fill_static_options_from_the_record():
    rec = record(provider="static", static=dict(vip="198.18.0.10", lb_hosts=[], interface="eth1"))
    out = spec.fill(static_spec(["h1"], [], static=dict(vip="", interface=None)), SWARM, rec)
    assert out["static"] == dict(vip="198.18.0.10", lb_hosts=[], interface="eth1")
    out = spec.fill(static_spec(["h1"], [], static=dict(interface="eth2")), SWARM, rec)
    assert out["static"]["interface"] == "eth2"


def test_fill_hosts_only_for_inventory_providers():
    out = spec.fill(dict(name="demo", hosts=dict(master=["h1"]), static=dict(vip="198.18.0.10")), SWARM)
    assert "hosts" not in out
    assert out["static"] == {}
    assert out["masters"] == 1


def test_fill_delete_leaves_counts_alone():
    out = spec.fill(dict(name="demo", operation="delete"), SWARM, record(masters=3))
    assert "masters" not in out
    assert "nodes" not in out


def test_fill_without_a_contract():
    out = spec.fill(dict(name="demo", coe="k8s"), None)
    assert "masters" not in out
    assert out["provider"] == "local"


def test_fill_openstack_only_for_openstack():
    out = spec.fill(dict(name="demo", provider="openstack"), SWARM)
    assert out["openstack"]["flavor"] == "m1.small"
    assert spec.fill(dict(name="demo", openstack=dict(flavor="x")), SWARM)["openstack"] == {}


def test_fill_does_not_change_its_input():
    given = dict(name="demo", remove=(w(1),), extra_sans=("a.com",), hosts=None)
    rec = record(nodes=2)
    before = copy.deepcopy((given, rec))
    out = spec.fill(given, SWARM, rec)
    assert (given, rec) == before
    assert out["remove"] == [w(1)]
    assert out["extra_sans"] == ["a.com"]


# ------------------------------------------------------------------------------------------
# plan_hosts (through plan, as callers use it)
# ------------------------------------------------------------------------------------------


def test_plan_create():
    out = planned(good_spec())
    assert out["master_hosts"] == [m(1), m(2), m(3)]
    assert out["worker_hosts"] == [w(1), w(2)]
    assert out["adding"] == []
    assert out["removing_masters"] == []
    assert out["removing_workers"] == []
    assert out["lb"] == "demo-lb"
    assert (out["masters"], out["nodes"]) == (3, 2)


def test_plan_create_with_no_workers():
    out = planned(good_spec(masters=1, nodes=0))
    assert out["worker_hosts"] == []


def test_plan_hosts_directly():
    out = spec.plan_hosts(dict(name="demo", operation="create", masters=1, nodes=1, remove=[]), SWARM, {})
    assert out == dict(master_hosts=[m(1)], worker_hosts=[w(1)], adding=[], removing_masters=[], removing_workers=[])


def test_plan_converge_keeps_the_recorded_names():
    rec = record(masters=3, nodes=2, master_hosts=[m(1), m(4), m(5)], worker_hosts=[w(2), w(9)])
    out = planned(good_spec(masters=None, nodes=None), rec)
    assert out["master_hosts"] == [m(1), m(4), m(5)]
    assert out["worker_hosts"] == [w(2), w(9)]
    assert out["adding"] == []
    assert (out["masters"], out["nodes"]) == (3, 2)


def test_plan_converge_with_the_same_counts():
    rec = record(masters=3, nodes=2)
    out = planned(good_spec(), rec)
    assert out["master_hosts"] == rec["master_hosts"]
    assert out["worker_hosts"] == rec["worker_hosts"]


def test_plan_converge_of_a_record_with_no_workers():
    rec = record(masters=1, nodes=0)
    out = planned(good_spec(masters=1, nodes=0), rec)
    assert out["master_hosts"] == [m(1)]
    assert out["worker_hosts"] == []


def test_plan_create_after_a_half_done_scale_keeps_the_leaving_hosts():
    rec = record(masters=1, nodes=2, removing_masters=[m(2), m(3)], removing_workers=[w(3)])
    out = planned(good_spec(masters=1, nodes=2), rec)
    assert out["master_hosts"] == [m(1)]
    assert out["worker_hosts"] == [w(1), w(2)]
    assert out["removing_masters"] == [m(2), m(3)]
    assert out["removing_workers"] == [w(3)]


def test_plan_scale_up_workers():
    out = planned(good_spec(operation="scale", masters=None, nodes=4), record(masters=1, nodes=2))
    assert out["master_hosts"] == [m(1)]
    assert out["worker_hosts"] == [w(1), w(2), w(3), w(4)]
    assert out["adding"] == [w(3), w(4)]
    assert out["removing_masters"] == []
    assert out["removing_workers"] == []


def test_plan_scale_numbering_continues_after_the_highest_used():
    rec = record(masters=1, nodes=2, worker_hosts=[w(1), w(5)])
    out = planned(good_spec(operation="scale", masters=1, nodes=3), rec)
    assert out["worker_hosts"] == [w(1), w(5), w(6)]
    assert out["adding"] == [w(6)]


def test_plan_scale_numbering_skips_hosts_still_leaving():
    rec = record(masters=1, nodes=1, removing_workers=[w(8)])
    out = planned(good_spec(operation="scale", masters=1, nodes=2), rec)
    assert out["worker_hosts"] == [w(1), w(9)]
    assert out["removing_workers"] == [w(8)]


def test_plan_scale_down_workers():
    out = planned(good_spec(operation="scale", masters=1, nodes=1), record(masters=1, nodes=3))
    assert out["worker_hosts"] == [w(1)]
    assert out["removing_workers"] == [w(2), w(3)]
    assert out["adding"] == []


def test_plan_scale_to_no_workers():
    out = planned(good_spec(operation="scale", masters=1, nodes=0), record(masters=1, nodes=2))
    assert out["worker_hosts"] == []
    assert out["removing_workers"] == [w(1), w(2)]


def test_plan_scale_removes_named_workers():
    out = planned(good_spec(operation="scale", masters=None, nodes=None, remove=[w(2)]), record(masters=1, nodes=3))
    assert out["nodes"] == 2
    assert out["worker_hosts"] == [w(1), w(3)]
    assert out["removing_workers"] == [w(2)]
    assert out["adding"] == []


def test_plan_scale_replaces_a_named_worker():
    out = planned(good_spec(operation="scale", masters=1, nodes=3, remove=[w(1)]), record(masters=1, nodes=3))
    assert out["worker_hosts"] == [w(2), w(3), w(4)]
    assert out["adding"] == [w(4)]
    assert out["removing_workers"] == [w(1)]


def test_plan_scale_removes_named_workers_first_then_the_last():
    out = planned(good_spec(operation="scale", masters=1, nodes=1, remove=[w(2)]), record(masters=1, nodes=4))
    assert out["worker_hosts"] == [w(1)]
    assert out["removing_workers"] == [w(2), w(3), w(4)]


def test_plan_scale_up_masters():
    out = planned(good_spec(operation="scale", masters=3, nodes=None), record(masters=1, nodes=2))
    assert out["master_hosts"] == [m(1), m(2), m(3)]
    assert out["worker_hosts"] == [w(1), w(2)]
    assert out["adding"] == [m(2), m(3)]


def test_plan_scale_down_masters():
    out = planned(good_spec(operation="scale", masters=1, nodes=None), record(masters=5, nodes=1))
    assert out["master_hosts"] == [m(1)]
    assert out["removing_masters"] == [m(2), m(3), m(4), m(5)]
    assert out["adding"] == []


def test_plan_scale_masters_and_workers_together():
    out = planned(good_spec(operation="scale", masters=3, nodes=1), record(masters=1, nodes=2))
    assert out["adding"] == [m(2), m(3)]
    assert out["removing_workers"] == [w(2)]


def test_plan_scale_master_numbering_continues_after_the_highest_used():
    rec = record(masters=1, nodes=1, master_hosts=[m(3)], removing_masters=[m(4), m(5)])
    out = planned(good_spec(operation="scale", masters=3, nodes=1), rec)
    assert out["master_hosts"] == [m(3), m(6), m(7)]
    assert out["adding"] == [m(6), m(7)]
    assert out["removing_masters"] == [m(4), m(5)]


def test_plan_resumes_a_half_done_scale():
    # A scale from 3 workers to 1 that stopped after the record was written.
    rec = record(masters=1, nodes=1, removing_workers=[w(2), w(3)], removing_masters=[m(2), m(3)])
    out = planned(dict(name="demo", coe="swarm", operation="scale"), rec)
    assert (out["masters"], out["nodes"]) == (1, 1)
    assert out["master_hosts"] == [m(1)]
    assert out["worker_hosts"] == [w(1)]
    assert out["removing_workers"] == [w(2), w(3)]
    assert out["removing_masters"] == [m(2), m(3)]
    assert out["adding"] == []


def test_plan_resumes_a_half_done_scale_run_again_with_the_same_remove():
    rec = record(masters=1, nodes=2, worker_hosts=[w(1), w(3)], removing_workers=[w(2)])
    out = planned(dict(name="demo", coe="swarm", operation="scale", remove=[w(2)]), rec)
    assert out["nodes"] == 2
    assert out["worker_hosts"] == [w(1), w(3)]
    assert out["removing_workers"] == [w(2)]
    assert out["adding"] == []


def test_plan_leaving_hosts_listed_as_members_are_not_removed_twice():
    rec = record(masters=1, nodes=2, removing_workers=[w(2), w(3)])
    out = planned(dict(name="demo", coe="swarm", operation="scale"), rec)
    assert out["worker_hosts"] == [w(1), w(2)]
    assert out["removing_workers"] == [w(3)]


def test_plan_scale_of_a_schema_0_record():
    old = dict(name="demo", coe="swarm", masters=1, nodes=2, provider="local", subnet="198.18.10.0/24",
               managers=[m(1)], workers=[w(1), w(2)], removing_managers=[], removing_workers=[])
    out = planned(dict(name="demo", coe="swarm", operation="scale", nodes=3), old)
    assert out["master_hosts"] == [m(1)]
    assert out["worker_hosts"] == [w(1), w(2), w(3)]
    assert out["adding"] == [w(3)]


def test_plan_static_hosts_added_and_removed():
    rec = record(masters=1, nodes=2, master_hosts=["h1"], worker_hosts=["h2", "h3"], provider="static")
    out = planned(static_spec(["h1"], ["h2", "h4"], operation="scale"), rec)
    assert out["master_hosts"] == ["h1"]
    assert out["worker_hosts"] == ["h2", "h4"]
    assert out["adding"] == ["h4"]
    assert out["removing_masters"] == []
    assert out["removing_workers"] == ["h3"]


def test_plan_static_master_replaced():
    rec = record(masters=3, nodes=1, master_hosts=["h1", "h6", "h7"], worker_hosts=["h2"], provider="static")
    out = planned(static_spec(["h5", "h6", "h7"], ["h2"]), rec)
    assert out["master_hosts"] == ["h5", "h6", "h7"]
    assert out["adding"] == ["h5"]
    assert out["removing_masters"] == ["h1"]
    assert out["removing_workers"] == []


def test_plan_static_hosts_still_leaving_and_coming_back():
    rec = record(masters=1, nodes=1, master_hosts=["h1"], worker_hosts=["h2"], removing_workers=["h3", "h4"],
                 provider="static")
    out = planned(static_spec(["h1"], ["h2", "h3"]), rec)
    assert out["adding"] == ["h3"]
    assert out["removing_workers"] == ["h4"]


def test_plan_static_create_may_change_counts():
    rec = record(masters=1, nodes=2, master_hosts=["h1"], worker_hosts=["h2", "h3"], provider="static")
    out = planned(static_spec(["h1"], ["h2"]), rec)
    assert out["nodes"] == 1
    assert out["removing_workers"] == ["h3"]


# ------------------------------------------------------------------------------------------
# remove
# ------------------------------------------------------------------------------------------


def test_remove_is_for_scale():
    assert "remove is for the scale operation" in problems_of(good_spec(remove=[w(1)]))


def test_remove_an_unknown_worker():
    problems = problems_of(good_spec(operation="scale", masters=1, nodes=1, remove=[w(9)]), record(nodes=2))
    assert problems == ["cannot remove demo-worker-9: not workers of cluster demo (workers: demo-worker-1, "
                        "demo-worker-2)"]


def test_remove_a_master():
    problems = problems_of(good_spec(operation="scale", masters=1, nodes=1, remove=[m(1)]), record(nodes=0))
    assert problems == ["cannot remove demo-manager-1: not workers of cluster demo (workers: none) (masters are "
                        "removed by lowering their count)"]


# ------------------------------------------------------------------------------------------
# change_problems
# ------------------------------------------------------------------------------------------


def test_change_nothing_recorded():
    assert spec.change_problems(good_spec(), {}) == []
    assert spec.change_problems(good_spec(), None) == []


def test_scale_of_an_unknown_cluster():
    assert spec.change_problems(good_spec(operation="scale"), {}) == [MISSING]
    assert problems_of(dict(name="demo", operation="scale")) == [MISSING]


def test_create_with_other_counts_is_refused():
    problems = spec.change_problems(good_spec(masters=3, nodes=5), record(masters=1, nodes=2))
    assert problems == ["cluster demo already exists with another spec (masters 1 -> 3, nodes 2 -> 5); change the "
                        "counts with the scale operation, or delete the cluster first"]
    assert "scale" in problems_of(good_spec(nodes=5), record(masters=3, nodes=2))[0]


def test_create_with_another_subnet_is_refused():
    problems = spec.change_problems(good_spec(masters=1, nodes=1, subnet="198.19.1.0/24"), record())
    assert problems == ["cluster demo already exists with another spec (subnet 198.18.10.0/24 -> 198.19.1.0/24); "
                        "change the counts with the scale operation, or delete the cluster first"]
    assert spec.change_problems(good_spec(masters=1, nodes=1, subnet=""), record()) == []
    assert spec.change_problems(good_spec(masters=1, nodes=1, subnet="198.18.10.0/24"), record()) == []


def test_scale_with_other_counts_is_fine():
    assert spec.change_problems(good_spec(operation="scale", masters=5, nodes=9), record()) == []


def test_coe_and_provider_cannot_change():
    rec = record(coe="kubernetes", provider="openstack")
    problems = spec.change_problems(good_spec(masters=1, nodes=1), rec)
    assert problems == ["coe cannot change (kubernetes -> swarm); delete and create the cluster",
                        "provider cannot change (openstack -> local); delete and create the cluster"]


def test_provider_change_through_plan():
    problems = problems_of(good_spec(masters=1, nodes=1, provider="openstack"), record())
    assert problems == ["provider cannot change (local -> openstack); delete and create the cluster"]


def test_record_without_coe_or_provider():
    rec = record()
    del rec["provider"]
    rec["coe"] = None
    assert spec.change_problems(good_spec(masters=1, nodes=1), rec) == []


def test_state_folder_of_another_cluster():
    problems = spec.change_problems(good_spec(), record(name="other", coe="k8s"))
    assert problems == ["the state folder belongs to cluster other, not demo; choose another state_dir"]


def test_record_without_a_name():
    rec = record()
    del rec["name"]
    assert spec.change_problems(good_spec(masters=1, nodes=1), rec) == []


# ------------------------------------------------------------------------------------------
# migrate_record
# ------------------------------------------------------------------------------------------


def test_migrate_nothing():
    assert spec.migrate_record({}) == {}
    assert spec.migrate_record(None) == {}


def test_migrate_schema_0():
    old = dict(name="demo", masters=3, nodes=2, provider="local", cloud="", openstack={}, subnet="198.18.10.0/24",
               endpoint="198.18.10.2", managers=[m(1), m(2), m(3)], workers=[w(1), w(2)],
               removing_managers=[m(4)], removing_workers=[w(3)])
    before = copy.deepcopy(old)
    out = spec.migrate_record(old)
    assert old == before
    assert out == dict(name="demo", masters=3, nodes=2, provider="local", cloud="", openstack={},
                       subnet="198.18.10.0/24", endpoint="198.18.10.2", master_hosts=[m(1), m(2), m(3)],
                       worker_hosts=[w(1), w(2)], removing_masters=[m(4)], removing_workers=[w(3)], coe="swarm",
                       contract_version=1, schema_version=1)
    for key in ("managers", "workers", "removing_managers"):
        assert key not in out


def test_migrate_a_minimal_schema_0_record():
    out = spec.migrate_record(dict(name="demo"))
    assert out["master_hosts"] == []
    assert out["worker_hosts"] == []
    assert out["removing_masters"] == []
    assert out["removing_workers"] == []
    assert out["schema_version"] == spec.RECORD_SCHEMA == 1


def test_migrate_keeps_a_recorded_coe():
    assert spec.migrate_record(dict(name="demo", coe="other"))["coe"] == "other"


def test_migrate_current_schema_is_unchanged():
    rec = record()
    assert spec.migrate_record(rec) == rec
    assert spec.migrate_record(rec) is not rec


def test_migrate_is_idempotent():
    once = spec.migrate_record(dict(name="demo", managers=[m(1)], workers=[w(1)]))
    assert spec.migrate_record(once) == once


def test_newer_schema_is_refused():
    with pytest.raises(ValueError, match=r"schema version 2, newer than this release reads \(1\); upgrade rax.carina"):
        spec.migrate_record(record(schema_version=2))


def test_plan_refuses_a_newer_record():
    with pytest.raises(ValueError, match="newer than this release reads"):
        spec.plan(good_spec(), SWARM, record(schema_version=3))


# ------------------------------------------------------------------------------------------
# api_url
# ------------------------------------------------------------------------------------------


def test_api_url():
    assert spec.api_url(SWARM, "198.18.10.3") == "tcp://198.18.10.3:2376"
    assert spec.api_url(SWARM, "lb.example.com") == "tcp://lb.example.com:2376"


def test_api_url_without_an_endpoint():
    assert spec.api_url(SWARM, "") == ""
    assert spec.api_url(SWARM, None) == ""


def test_api_url_of_another_contract(swarm):
    swarm["api_url"] = "https://{endpoint}:6443"
    assert spec.api_url(swarm, "198.18.20.1") == "https://198.18.20.1:6443"


# ------------------------------------------------------------------------------------------
# check / plan as a whole
# ------------------------------------------------------------------------------------------


def test_check_a_good_spec():
    assert spec.check(spec.fill(good_spec(), SWARM), SWARM) == []


def test_plan_reports_every_problem_at_once():
    bad = dict(name="Bad_Name", coe="swarm", operation="create", masters=2, nodes=-1, provider="local",
               extra_sans=["a b", "ok.example.com", "x/y"], subnet="nonsense")
    with pytest.raises(spec.SpecError) as info:
        spec.plan(bad, SWARM)
    problems = info.value.problems
    assert len(problems) == 6
    assert problems[0].startswith("name 'Bad_Name'")
    assert "(use 1 or 3)" in problems[1]
    assert problems[2].startswith("nodes=-1")
    assert problems[3] == "extra SAN 'a b' is neither an IP address nor a DNS name"
    assert problems[4] == "extra SAN 'x/y' is neither an IP address nor a DNS name"
    assert problems[5].startswith("subnet 'nonsense' is not an IPv4 network")
    message = str(info.value)
    assert message.startswith("cluster spec of Bad_Name is not valid: ")
    assert message == "cluster spec of Bad_Name is not valid: " + "; ".join(problems)


def test_plan_reports_problems_of_every_kind():
    bad = dict(name="demo-", coe="swarm", operation="scale", masters=4, nodes=300, provider="openstack",
               openstack=dict(server_type="container", flavour="x"), extra_sans=[""], subnet="fd00::/64",
               remove=[m(1)])
    rec = record(name="demo-", coe="other", masters=1, nodes=1)
    problems = problems_of(bad, rec)
    expected_starts = ["name 'demo-'", "server_type 'container'", "unknown openstack options flavour",
                       "masters=4", "nodes=300", "extra SAN ''", "subnet fd00::/64", "cannot remove demo-manager-1",
                       "coe cannot change", "provider cannot change"]
    assert len(problems) == len(expected_starts)
    for problem, start in zip(problems, expected_starts, strict=True):
        assert problem.startswith(start), (problem, start)


def test_spec_error_is_a_value_error():
    error = spec.SpecError("demo", ["a", "b"])
    assert isinstance(error, ValueError)
    assert error.problems == ["a", "b"]
    assert str(error) == "cluster spec of demo is not valid: a; b"


def test_plan_never_partially():
    bad = good_spec(masters=2, extra_sans=["a b"], remove=[w(1)], openstack=dict(flavor="x"))
    rec = record(masters=1, nodes=2)
    before = copy.deepcopy((bad, rec))
    with pytest.raises(spec.SpecError):
        spec.plan(bad, SWARM, rec)
    assert (bad, rec) == before
    for key in ("master_hosts", "worker_hosts", "adding", "lb"):
        assert key not in bad


def test_plan_leaves_its_input_alone_on_success():
    given = good_spec(operation="scale", masters=None, nodes=3, remove=[w(1)])
    rec = record(masters=1, nodes=2)
    before = copy.deepcopy((given, rec))
    out = spec.plan(given, SWARM, rec)
    assert (given, rec) == before
    assert out is not given
    assert out["worker_hosts"] == [w(2), w(3), w(4)]


def test_plan_delete():
    out = spec.plan(dict(name="demo", operation="delete"), SWARM, record(masters=3))
    assert out["operation"] == "delete"
    for key in ("master_hosts", "worker_hosts", "lb", "masters", "nodes"):
        assert key not in out


def test_plan_delete_ignores_counts_and_sans():
    out = spec.plan(dict(name="demo", operation="delete", masters=2, extra_sans=["a b"]), SWARM)
    assert out["masters"] == 2


def test_plan_delete_still_checks_the_name_and_the_contract(swarm):
    assert problems_of(dict(name="-x", operation="delete"))[0].startswith("name '-x'")
    swarm["operations"] = ["create"]
    assert problems_of(dict(name="demo", operation="delete"), contract=swarm) == [
        "delete is not supported by coe swarm (it supports: create)"]


def test_plan_unknown_operation():
    assert problems_of(dict(name="demo", operation="resize")) == [
        "operation 'resize': choose one of create, scale, delete"]


def test_static_hosts_must_keep_a_master_of_the_record():
    contract = SWARM
    recorded = {"name": "st", "coe": "swarm", "provider": "static", "master_hosts": ["m1"], "worker_hosts": [],
                "static": {"lb_hosts": ["lb"]}, "schema_version": 1}
    request = {"name": "st", "coe": "swarm", "operation": "scale", "provider": "static",
               "inventory_hosts": {"master": ["m2"], "worker": []}, "static": {"lb_hosts": ["lb"]}}
    with pytest.raises(spec.SpecError, match="none of the masters m1 stays"):
        spec.plan(request, contract, recorded)
    request["inventory_hosts"]["master"] = ["m1", "m2", "m3"]
    assert spec.plan(request, contract, recorded)["adding"] == ["m2", "m3"]


# ------------------------------------------------------------------------------------------
# COE options: declared by the contract, defaulted, checked, kept
# ------------------------------------------------------------------------------------------

OPTION_RULES = {
    "pod_cidr": {"type": "cidr", "default": "198.19.0.0/17", "fixed": True, "max_prefix": 20},
    "service_cidr": {"type": "cidr", "default": "198.19.224.0/20", "fixed": True},
    "version": {"type": "str", "default": "1.20.2"},
    "runtime": {"type": "str", "default": "containerd", "choices": ["containerd"]},
    "dns": {"type": "bool", "default": True},
    "max_pods": {"type": "int", "default": 110, "min": 10, "max": 250},
}


@pytest.fixture
def optioned(swarm):
    swarm["options"] = copy.deepcopy(OPTION_RULES)
    return swarm


def test_options_default_from_the_contract(optioned):
    assert planned(good_spec(), contract=optioned)["coe_options"] == dict(
        pod_cidr="198.19.0.0/17", service_cidr="198.19.224.0/20", version="1.20.2", runtime="containerd",
        dns=True, max_pods=110)


def test_a_contract_without_options_plans_none(swarm):
    del swarm["options"]
    assert planned(good_spec(), contract=swarm)["coe_options"] == {}


def test_options_given_recorded_then_default(optioned):
    rec = record(3, 2, coe_options=dict(version="1.20.1", dns=False))
    out = planned(good_spec(operation="scale", coe_options=dict(version="1.20.2", max_pods="")), rec, optioned)
    assert out["coe_options"]["version"] == "1.20.2"  # given
    assert out["coe_options"]["dns"] is False  # recorded
    assert out["coe_options"]["max_pods"] == 110  # empty means left out: the default


@pytest.mark.parametrize("options, message", [
    (dict(colour="red"), "option colour is not an option of coe swarm (its options: dns, max_pods, pod_cidr,"),
    (dict(pod_cidr="198.19.0.1/17"), "option pod_cidr '198.19.0.1/17' is not a network in CIDR form"),
    (dict(pod_cidr="fd00::/64"), "option pod_cidr must be an IPv4 network"),
    (dict(pod_cidr="198.19.0.0/24"), "option pod_cidr 198.19.0.0/24 is too small: use a /20 or larger"),
    (dict(pod_cidr=17), "option pod_cidr must be an IPv4 network in CIDR form, not 17"),
    (dict(dns="yes"), "option dns must be true or false, not 'yes'"),
    (dict(max_pods=5), "option max_pods must be a whole number from 10 to 250, not 5"),
    (dict(max_pods=True), "option max_pods must be a whole number from 10 to 250, not True"),
    (dict(runtime="docker"), "option runtime must be one of containerd, not 'docker'"),
    (dict(version="1.20\n"), "option version must be a single-line string, not '1.20\\n'"),
    (dict(service_cidr="198.19.0.0/24"), "option pod_cidr 198.19.0.0/17 overlaps service_cidr 198.19.0.0/24"),
])
def test_bad_options_are_refused(optioned, options, message):
    found = problems_of(good_spec(coe_options=options), contract=optioned)
    assert any(message in problem for problem in found), found


def test_options_must_not_overlap_the_hosts_subnet(optioned):
    found = problems_of(good_spec(subnet="198.19.1.0/24"), contract=optioned)
    assert found == ["option pod_cidr 198.19.0.0/17 overlaps the hosts' subnet 198.19.1.0/24: choose networks apart"]
    # The recorded subnet counts too.
    found = problems_of(good_spec(operation="scale"), record(3, 2, subnet="198.19.224.0/24"), optioned)
    assert any("service_cidr 198.19.224.0/20 overlaps the hosts' subnet" in p for p in found), found


def test_fixed_options_cannot_change(optioned):
    rec = record(3, 2, coe_options=dict(pod_cidr="198.19.0.0/17", version="1.20.1"))
    found = problems_of(good_spec(operation="scale", coe_options=dict(pod_cidr="198.18.128.0/17")), rec, optioned)
    assert found == ["option pod_cidr cannot change once the cluster exists (198.19.0.0/17 -> 198.18.128.0/17); "
                     "delete and create the cluster"]
    # An option that is not fixed may change.
    assert planned(good_spec(operation="scale", coe_options=dict(version="1.20.2")), rec, optioned)


def test_delete_is_not_held_up_by_options(optioned):
    """A delete goes ahead whatever options come with it: nothing is made from them."""
    out = planned(dict(name="demo", operation="delete", coe_options=dict(colour="red")), record(), optioned)
    assert out["operation"] == "delete"


@pytest.mark.parametrize("value", ["198.19.250.0/24", "0.0.0.0/0", "198.18.0.7/32"])
def test_ssh_cidr_is_an_ipv4_network(value):
    options = spec.fill_openstack(dict(ssh_cidr=value), {})
    assert options["ssh_cidr"] == value and spec.provider_problems("openstack", options) == []


@pytest.mark.parametrize("value", ["anywhere", "198.18.0.7/16", "2001:db8::/32", ""])
def test_a_bad_ssh_cidr_is_refused(value):
    options = spec.fill_openstack(dict(ssh_cidr=value), {})
    [problem] = spec.provider_problems("openstack", options)
    assert problem.startswith("ssh_cidr ")


def test_ssh_cidr_defaults_to_anywhere_then_keeps_the_recorded_one():
    assert spec.fill_openstack({}, {})["ssh_cidr"] == "0.0.0.0/0"
    assert spec.fill_openstack({}, {"openstack": {"ssh_cidr": "198.19.250.0/24"}})["ssh_cidr"] == "198.19.250.0/24"


@pytest.mark.parametrize("value, wanted", [
    (["198.19.250.0/24"], ["198.19.250.0/24"]),
    ("198.19.250.0/24, 198.18.0.7/32 198.19.250.0/24", ["198.19.250.0/24", "198.18.0.7/32"]),
    (["0.0.0.0/0"], ["0.0.0.0/0"]),
])
def test_api_cidrs_are_ipv4_networks_each_once(value, wanted):
    options = spec.fill_openstack(dict(api_cidrs=value), {})
    assert options["api_cidrs"] == wanted and spec.provider_problems("openstack", options) == []


@pytest.mark.parametrize("value, problem", [
    (["anywhere"], "api_cidrs 'anywhere': give an IPv4 network"),
    (["198.18.0.7/16"], "api_cidrs '198.18.0.7/16': give an IPv4 network in CIDR form"),
    (["2001:db8::/32"], "api_cidrs 2001:db8::/32: give an IPv4 network"),
    ([], "api_cidrs []: give 1 to 16 IPv4 networks"),
    ("", "api_cidrs []: give 1 to 16 IPv4 networks"),
    (["198.18.%d.0/24" % i for i in range(17)], "api_cidrs ['198.18.0.0/24'"),
    (42, "api_cidrs 42: give 1 to 16"),
])
def test_bad_api_cidrs_are_refused(value, problem):
    options = spec.fill_openstack(dict(api_cidrs=value), {})
    [found] = spec.provider_problems("openstack", options)
    assert found.startswith(problem), found


def test_api_cidrs_default_to_anywhere_then_keep_the_recorded_ones():
    assert spec.fill_openstack({}, {})["api_cidrs"] == ["0.0.0.0/0"]
    recorded = {"openstack": {"api_cidrs": ["198.19.250.0/24"]}}
    assert spec.fill_openstack({}, recorded)["api_cidrs"] == ["198.19.250.0/24"]
    assert spec.fill_openstack({"api_cidrs": ["198.18.0.0/15"]}, recorded)["api_cidrs"] == ["198.18.0.0/15"]


def a_24_of(index):
    """The first /24 of one of the private ranges (derived: tests name no private range outside 198.18.0.0/15)."""
    return str(next(spec.PRIVATE_RANGES[index].subnets(new_prefix=24)))


@pytest.mark.parametrize("index", range(5))
def test_a_private_subnet_the_machine_does_not_route_is_fine(index):
    routes = [("198.18.44.0/24", "eth0")]
    assert planned(good_spec(subnet=a_24_of(index), machine_routes=routes))["subnet"] == a_24_of(index)


@pytest.mark.parametrize(("cidr", "what"), spec.FORBIDDEN_RANGES)
def test_loopback_link_local_multicast_and_reserved_are_never_a_cluster_s_network(cidr, what):
    subnet = str(next(ipaddress.ip_network(cidr).subnets(new_prefix=24)))
    [problem] = problems_of(good_spec(subnet=subnet, allow_public_subnet=True))
    assert problem.startswith(f"subnet {subnet} is {what} ")


def test_a_public_subnet_needs_the_override():
    [problem] = problems_of(good_spec(subnet="100.128.0.0/24"))
    assert "is not a private range" in problem and "carina_allow_public_subnet=true" in problem
    assert planned(good_spec(subnet="100.128.0.0/24", allow_public_subnet=True))["subnet"] == "100.128.0.0/24"


def test_a_range_the_machine_routes_is_refused():
    routes = [("198.19.0.0/16", "eth1"), ("198.18.44.0/24", "eth2")]
    [problem] = problems_of(good_spec(subnet="198.19.5.0/24", machine_routes=routes))
    assert problem == ("subnet 198.19.5.0/24 overlaps 198.19.0.0/16, which this machine routes through eth1: "
                       "choose a range the machine does not use")
    assert planned(good_spec(subnet="198.18.43.0/24", machine_routes=routes))
    assert "machine_routes" not in planned(good_spec(subnet="198.18.30.0/24", machine_routes=routes))


def test_the_recorded_subnet_is_not_judged_again():
    recorded = {"name": "demo", "coe": "swarm", "provider": "local", "subnet": "198.19.5.0/24",
                "master_hosts": ["demo-manager-1", "demo-manager-2", "demo-manager-3"],
                "worker_hosts": ["demo-worker-1", "demo-worker-2"]}
    # Its own network is routed by then; the record holds the subnet it was made with.
    assert planned(good_spec(subnet="198.19.5.0/24", machine_routes=[("198.19.5.0/24", "eth1")]), recorded)


def test_machine_routes_are_read_from_the_kernel_table_bridges_left_out(tmp_path):
    table = tmp_path / "route"
    table.write_text("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
                     "eth0\t00000000\t01FA12C6\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
                     "eth0\t00FA12C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
                     "br-1\t002C12C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")
    (tmp_path / "net" / "br-1" / "bridge").mkdir(parents=True)
    (tmp_path / "net" / "eth0").mkdir(parents=True)
    assert spec.machine_routes(str(table), str(tmp_path / "net")) == [("198.18.250.0/24", "eth0")]
    assert spec.machine_routes(str(tmp_path / "missing")) == []
