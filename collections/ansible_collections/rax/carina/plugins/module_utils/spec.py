# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The planning rules of a cluster, in one place: pure Python, no Ansible, no I/O.

Both the module rax.carina.cluster_spec (every playbook run) and the carina command (before it
records anything) check a spec with these functions, so a spec is judged the same way on every
path. A COE's own rules (master counts, words, supported operations) come from its contract
(roles/coe_<name>/meta/contract.yml), passed in as a dict.
"""

from __future__ import annotations

import ipaddress
import os
import re

# Providers that exist (roles provider_<name>).
PROVIDERS = ("local", "openstack", "static")
OPERATIONS = ("create", "scale", "delete")

# One name rule for clusters: a DNS label, a hostname part and a Nova name, matched whole.
NAME_MAX = 40
NAME_RE = re.compile(r"[a-z](?:[a-z0-9-]{0,%d}[a-z0-9])?" % (NAME_MAX - 2))
NAME_RULE = ("use 1 to %d lower-case letters, digits and single '-', starting with a letter and not ending "
             "with '-'" % NAME_MAX)
# A host name of the static provider's inventory (it becomes the node's name in the COE).
HOST_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
DNS_LABEL_RE = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)", re.IGNORECASE)

# The subnet a provider picks when none is given is a /24: its capacity bounds the host count.
DEFAULT_PREFIX = 24
RECORD_SCHEMA = 1

OPENSTACK_DEFAULTS = dict(cloud=None, flavor="m1.small", master_flavor=None, fixed_network="private",
                          fixed_subnet="private-subnet", external_network="public", floating_ip_enabled=False,
                          master_server_type="vm", server_type="vm", resource_class="baremetal",
                          ssh_cidr="0.0.0.0/0", api_cidrs=["0.0.0.0/0"])
# How many client ranges the API may be opened to (security group rules and Octavia allowed_cidrs).
MAX_API_CIDRS = 16
SERVER_TYPES = ("vm", "bm")
# Providers whose hosts exist already and are named by the inventory (groups of masters and workers).
INVENTORY_PROVIDERS = ("static",)
STATIC_DEFAULTS = dict(vip="", lb_hosts=[], interface="")


class SpecError(ValueError):
    """A spec that cannot be accepted; `problems` says what to change, one entry a problem."""

    def __init__(self, name, problems):
        self.problems = list(problems)
        super(SpecError, self).__init__("cluster spec of %s is not valid: %s" % (name, "; ".join(self.problems)))


def name_problems(name):
    """The one name rule, matched whole: no trailing newline or space slips through."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or "--" in name:
        return ["name %r: %s" % (name, NAME_RULE)]
    return []


def valid_name(name):
    return not name_problems(name)


def default_coe(contracts):
    """The COE a cluster gets when it names none: the contract that says `default`, else the only one."""
    marked = sorted(name for name, contract in (contracts or {}).items() if (contract or {}).get("default"))
    if marked:
        return marked[0]
    return next(iter(contracts)) if contracts and len(contracts) == 1 else None


def word(contract, role):
    """The COE's word for a generic role (master or worker): manager, control-plane, agent..."""
    return contract["roles"][role]["word"]


def host_name(cluster, contract, role, index):
    """The name of a host: <cluster>-<the COE's word for its role>-<n>. The load balancer is <cluster>-lb."""
    if role == "lb":
        return "%s-lb" % cluster
    return "%s-%s-%d" % (cluster, word(contract, role), index)


def host_names(cluster, contract, role, count, existing=()):
    """`count` new host names of a role, numbered after the highest number in use."""
    prefix = "%s-%s-" % (cluster, word(contract, role))
    used = [int(n[len(prefix):]) for n in existing if n.startswith(prefix) and n[len(prefix):].isdigit()]
    start = max(used or [0]) + 1
    return [host_name(cluster, contract, role, i) for i in range(start, start + count)]


def is_count(value):
    """An int, and not a bool (True would otherwise pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def count_problems(contract, masters, nodes):
    """The COE's master count rules and the worker bounds, from its contract."""
    problems = []
    rule = contract["masters"]
    plural = contract["roles"]["master"]["plural"]
    low, high, odd = rule.get("min", 1), rule.get("max", 7), rule.get("odd", False)
    if not is_count(masters) or masters < low or masters > high or (odd and masters % 2 == 0):
        hint = ""
        if is_count(masters) and odd and masters % 2 == 0 and low <= masters <= high + 1:
            below, above = max(low, masters - 1), min(high, masters + 1)
            hint = " (use %d or %d)" % (below, above) if below != above else " (use %d)" % below
        shape = "odd, " if odd else ""
        problems.append("masters=%s: the number of %s must be %sfrom %d to %d%s%s" % (
            masters, plural, shape, low, high,
            ", so that a majority survives failures" if odd else "", hint))
    wrule = contract["workers"]
    wplural = contract["roles"]["worker"]["plural"]
    wlow, whigh = wrule.get("min", 0), wrule.get("max", 250)
    if not is_count(nodes) or nodes < wlow or nodes > whigh:
        problems.append("nodes=%s: the number of %s must be from %d to %d" % (nodes, wplural, wlow, whigh))
    return problems


def operation_problems(contract, operation):
    if operation not in contract.get("operations", []):
        return ["%s is not supported by coe %s (it supports: %s)" % (
            operation, contract["name"], ", ".join(contract.get("operations", [])))]
    return []


def subnet_problems(subnet, hosts_needed):
    """An IPv4 network in CIDR form with room for every host (network, broadcast and gateway excluded)."""
    if not subnet:
        room = 2 ** (32 - DEFAULT_PREFIX) - 3
        if hosts_needed > room:
            return ["the cluster needs %d hosts, more than the %d a default /%d subnet holds: give a larger "
                    "subnet" % (hosts_needed, room, DEFAULT_PREFIX)]
        return []
    try:
        net = ipaddress.ip_network(subnet, strict=True)
    except ValueError as exc:
        return ["subnet %r is not an IPv4 network in CIDR form (%s), for example 198.18.10.0/24" % (subnet, exc)]
    if net.version != 4:
        return ["subnet %s: use an IPv4 network" % subnet]
    room = max(0, net.num_addresses - 3)
    if room < hosts_needed:
        return ["subnet %s has room for %d hosts, the cluster needs %d: use a larger subnet"
                % (subnet, room, hosts_needed)]
    return []


# Ranges a cluster's own network may use without an override: RFC 1918, shared address space
# (RFC 6598) and the benchmarking range (RFC 2544), where carina's tests live. The lines that name
# ranges carry the marker the repository's address rule knows (they name rules, not test traffic).
PRIVATE_RANGES = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # named ranges, not traffic
    "100.64.0.0/10", "198.18.0.0/15"))
# Never a cluster's network, override or not.
FORBIDDEN_RANGES = (
    ("0.0.0.0/8", "'this network'"), ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),  # named ranges, not traffic
    ("224.0.0.0/4", "multicast"), ("240.0.0.0/4", "reserved"))  # named ranges, not traffic
PRIVATE_TEXT = ", ".join(str(n) for n in PRIVATE_RANGES)


def subnet_range_problems(subnet, allow_public=False, routes=None):
    """A new cluster network: a private range (or a public one with allow_public), never loopback,
    link-local, multicast or reserved, and none the machine already routes (routes: [(network, device)],
    as machine_routes() reads them)."""
    try:
        net = ipaddress.ip_network(subnet, strict=True)
    except ValueError:
        return []  # subnet_problems says why
    if net.version != 4:
        return []
    for cidr, what in FORBIDDEN_RANGES:
        if net.overlaps(ipaddress.ip_network(cidr)):
            return ["subnet %s is %s (%s): choose a private range (%s)" % (subnet, what, cidr, PRIVATE_TEXT)]
    problems = []
    if not any(net.subnet_of(private) for private in PRIVATE_RANGES) and not allow_public:
        problems.append("subnet %s is not a private range (%s); a public range hides the real hosts that use it: "
                        "give allow_public_subnet (carina_allow_public_subnet=true) if you mean it"
                        % (subnet, PRIVATE_TEXT))
    for cidr, device in routes or []:
        route = ipaddress.ip_network(cidr, strict=False)
        if route.prefixlen and net.overlaps(route):
            problems.append("subnet %s overlaps %s, which this machine routes through %s: choose a range the "
                            "machine does not use" % (subnet, route, device))
    return problems


def machine_routes(path="/proc/net/route", devices="/sys/class/net"):
    """[(network, device)] of the machine's IPv4 routes, default route left out; [] where unreadable.

    Routes through a Linux bridge are left out too: they are container engines' networks, which the
    provider judges (naming the network that holds the range)."""
    routes = []
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()[1:]
    except OSError:
        return routes
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            dest = ipaddress.ip_address(int(fields[1], 16).to_bytes(4, "little"))
            mask = ipaddress.ip_address(int(fields[7], 16).to_bytes(4, "little"))
            network = ipaddress.ip_network("%s/%s" % (dest, mask), strict=False)
        except ValueError:
            continue
        if network.prefixlen and not os.path.isdir(os.path.join(devices, fields[0], "bridge")):
            routes.append((str(network), fields[0]))
    return routes


def san_problems(sans):
    """Each extra SAN must be an IP address or a DNS name (labels of letters, digits and '-', '*.' first)."""
    problems = []
    for san in sans or []:
        if not isinstance(san, str) or not san_ok(san):
            problems.append("extra SAN %r is neither an IP address nor a DNS name" % (san,))
    return problems


def san_ok(san):
    try:
        ipaddress.ip_address(san)
        return True
    except ValueError:
        pass
    name = san[2:] if san.startswith("*.") else san
    if not name or len(name) > 253 or name.endswith("."):
        return False
    return all(DNS_LABEL_RE.fullmatch(label) for label in name.split("."))


def _cidr_problem(name, rule, value):
    try:
        net = ipaddress.ip_network(value, strict=True) if isinstance(value, str) else None
    except ValueError as exc:
        return "option %s %r is not a network in CIDR form (%s), for example 198.19.0.0/17" % (name, value, exc)
    if net is None or net.version != 4:
        return "option %s must be an IPv4 network in CIDR form, not %r" % (name, value)
    most = rule.get("max_prefix")
    if most is not None and net.prefixlen > most:
        return "option %s %s is too small: use a /%d or larger" % (name, value, most)
    return None


def option_value_problem(name, rule, value):
    """What is wrong with one COE option's value, or None."""
    kind = rule.get("type", "str")
    if kind == "cidr":
        return _cidr_problem(name, rule, value)
    problem = None
    if kind == "int":
        if not is_count(value) or value < rule.get("min", 0) or value > rule.get("max", 2 ** 31):
            problem = "option %s must be a whole number from %d to %d, not %r" % (
                name, rule.get("min", 0), rule.get("max", 2 ** 31), value)
    elif kind == "bool":
        if not isinstance(value, bool):
            problem = "option %s must be true or false, not %r" % (name, value)
    elif not isinstance(value, str) or "\n" in value or (rule.get("choices") and value not in rule["choices"]):
        choices = rule.get("choices")
        problem = "option %s must be %s, not %r" % (
            name, "one of " + ", ".join(choices) if choices else "a single-line string", value)
    return problem


def fill_coe_options(given, recorded, contract):
    """The COE's options: given, else recorded, else the contract's defaults (only those it declares)."""
    rules = (contract or {}).get("options") or {}
    before = dict(recorded.get("coe_options") or {})
    given = dict((k, v) for k, v in (given or {}).items() if v not in (None, ""))
    out = dict((key, given.get(key, before.get(key, rule.get("default")))) for key, rule in rules.items())
    out.update((key, value) for key, value in given.items() if key not in rules)  # reported by coe_option_problems
    return out


def coe_option_problems(spec, contract, recorded):
    """Unknown options, wrong values, networks that overlap each other or the hosts' subnet, and
    options that cannot change once the cluster exists."""
    rules = contract.get("options") or {}
    options = spec.get("coe_options") or {}
    problems = []
    for name in sorted(options):
        if name not in rules:
            problems.append("option %s is not an option of coe %s (its options: %s)" % (
                name, contract["name"], ", ".join(sorted(rules)) or "none"))
            continue
        if options[name] is None and not rules[name].get("required"):
            continue
        problem = option_value_problem(name, rules[name], options[name])
        if problem:
            problems.append(problem)
    if problems:
        return problems
    networks = [(name, ipaddress.ip_network(options[name])) for name in sorted(rules)
                if rules[name].get("type") == "cidr" and options.get(name)]
    subnet = spec.get("subnet") or recorded.get("subnet")
    if subnet and not subnet_problems(subnet, 0):
        networks.append(("the hosts' subnet", ipaddress.ip_network(subnet)))
    for index, (name, net) in enumerate(networks):
        for other, other_net in networks[index + 1:]:
            if net.overlaps(other_net):
                problems.append("option %s %s overlaps %s %s: choose networks apart" % (name, net, other, other_net))
    before = recorded.get("coe_options") or {}
    for name in sorted(rules):
        if rules[name].get("fixed") and name in before and before[name] != options.get(name):
            problems.append("option %s cannot change once the cluster exists (%s -> %s); delete and create the "
                            "cluster" % (name, before[name], options.get(name)))
    return problems


def provider_problems(provider, options):
    """The provider's own options."""
    if provider not in PROVIDERS:
        return ["provider %r is not supported; choose one of: %s" % (provider, ", ".join(PROVIDERS))]
    problems = []
    if provider == "openstack":
        for key in ("master_server_type", "server_type"):
            if options.get(key) not in SERVER_TYPES:
                problems.append("%s %r: choose vm (Nova) or bm (Ironic)" % (key, options.get(key)))
        api_cidrs = options.get("api_cidrs", OPENSTACK_DEFAULTS["api_cidrs"])
        if not isinstance(api_cidrs, list) or not api_cidrs or len(api_cidrs) > MAX_API_CIDRS:
            problems.append("api_cidrs %r: give 1 to %d IPv4 networks in CIDR form (0.0.0.0/0 is anywhere)"
                            % (api_cidrs, MAX_API_CIDRS))
            api_cidrs = []
        for key, value in [("ssh_cidr", options.get("ssh_cidr", OPENSTACK_DEFAULTS["ssh_cidr"]))] + [
                ("api_cidrs", cidr) for cidr in api_cidrs]:
            try:
                net = ipaddress.ip_network(str(value), strict=True)
            except ValueError:
                problems.append("%s %r: give an IPv4 network in CIDR form, address/prefix "
                                "(0.0.0.0/0 is anywhere)" % (key, value))
                continue
            if net.version != 4:
                problems.append("%s %s: give an IPv4 network" % (key, value))
        unknown = sorted(set(options) - set(OPENSTACK_DEFAULTS))
        if unknown:
            problems.append("unknown openstack options %s; known: %s" % (
                ", ".join(unknown), ", ".join(sorted(OPENSTACK_DEFAULTS))))
    return problems


def static_problems(hosts, options):
    """Hosts named by the static provider's inventory: valid host names, each in one role only, and
    a load balancer: a host of its own (lb_hosts, one) or a virtual IP on the masters (vip)."""
    problems = []
    vip, lb_hosts = options.get("vip") or "", list(options.get("lb_hosts") or [])
    if vip and lb_hosts:
        problems.append("give either a load balancer host (%s) or a virtual IP (%s), not both"
                        % (", ".join(lb_hosts), vip))
    elif not vip and len(lb_hosts) != 1:
        problems.append("static hosts need a load balancer: name one host in the inventory's lb group "
                        "(it gets HAProxy), or give a virtual IP (vip: a free address on the masters' network, "
                        "for HAProxy and keepalived on the masters)" if not lb_hosts else
                        "name one load balancer host, not %d (%s)" % (len(lb_hosts), ", ".join(lb_hosts)))
    if vip:
        try:
            if ipaddress.ip_address(vip).version != 4:
                problems.append("vip %s: use an IPv4 address" % vip)
        except ValueError:
            problems.append("vip %r is not an IP address" % (vip,))
    if set(lb_hosts) & set((hosts.get("master") or []) + (hosts.get("worker") or [])):
        problems.append("the load balancer host must not be a master or worker; give a vip to run it on the masters")
    masters, workers = hosts.get("master") or [], hosts.get("worker") or []
    for name in masters + workers:
        if not isinstance(name, str) or not HOST_RE.fullmatch(name):
            problems.append("host %r: inventory names of static hosts must be host names (lower-case letters, "
                            "digits and '-')" % (name,))
    both = sorted(set(masters) & set(workers))
    if both:
        problems.append("hosts %s are named both master and worker; give each host one role" % ", ".join(both))
    return problems


def cidr_list(value):
    """api_cidrs as given: a list, or one text of CIDRs apart by commas or spaces (an AWX survey's text,
    Magnum's master_lb_allowed_cidrs label). Anything else is left for provider_problems to refuse."""
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    elif isinstance(value, (list, tuple)):
        value = [str(part).strip() for part in value]
    else:
        return value
    return list(dict.fromkeys(value))  # in the order given, each once


def fill_openstack(given, recorded):
    """OpenStack options left out: the ones the cluster was created with, else the defaults."""
    given = dict(given or {})
    before = dict((recorded or {}).get("openstack") or {})
    out = {}
    for key, default in OPENSTACK_DEFAULTS.items():
        value = given.pop(key, None)
        out[key] = value if value is not None else before.get(key, default)
    out["master_flavor"] = out["master_flavor"] or out["flavor"]
    out["api_cidrs"] = cidr_list(out["api_cidrs"])
    out.update((k, v) for k, v in given.items() if v is not None)  # unknown ones, for provider_problems
    return out


def plan_hosts(spec, contract, recorded):
    """Host names of the cluster after this run, and which hosts it adds and removes.

    `spec` has name, operation, masters, nodes, remove and, for the static provider, hosts
    ({master: [...], worker: [...]}, named by its inventory). `recorded` is the cluster's record
    (migrated to the current schema) or {}.
    """
    name = spec["name"]
    rec_masters = list(recorded.get("master_hosts") or [])
    rec_workers = list(recorded.get("worker_hosts") or [])
    rec_removing_masters = [n for n in recorded.get("removing_masters") or [] if n not in rec_masters]
    rec_removing_workers = [n for n in recorded.get("removing_workers") or [] if n not in rec_workers]
    given = spec.get("hosts")
    if given is not None:
        # Static hosts: the inventory says who is in; the record says who was.
        masters, workers = list(given.get("master") or []), list(given.get("worker") or [])
        known = set(rec_masters + rec_workers)
        return dict(
            master_hosts=masters, worker_hosts=workers,
            adding=[n for n in masters + workers if n not in known],
            removing_masters=[n for n in rec_masters + rec_removing_masters if n not in masters + workers],
            removing_workers=[n for n in rec_workers + rec_removing_workers if n not in masters + workers],
        )
    if spec["operation"] != "scale" or not recorded:
        masters = rec_masters or host_names(name, contract, "master", spec["masters"])
        workers = rec_workers if rec_masters else host_names(name, contract, "worker", spec["nodes"])
        return dict(master_hosts=masters, worker_hosts=workers, adding=[],
                    removing_masters=rec_removing_masters, removing_workers=rec_removing_workers)
    kept = [n for n in rec_workers if n not in spec["remove"]]
    removing_workers = list(spec["remove"]) + [n for n in rec_removing_workers if n not in spec["remove"]]
    if len(kept) > spec["nodes"]:
        removing_workers += kept[spec["nodes"]:]
        kept = kept[:spec["nodes"]]
    new_workers = host_names(name, contract, "worker", spec["nodes"] - len(kept), rec_workers + rec_removing_workers)
    kept_masters = rec_masters[:spec["masters"]]
    removing_masters = rec_masters[spec["masters"]:] + rec_removing_masters
    new_masters = host_names(name, contract, "master", spec["masters"] - len(kept_masters),
                             rec_masters + rec_removing_masters)
    return dict(master_hosts=kept_masters + new_masters, worker_hosts=kept + new_workers,
                adding=new_masters + new_workers,
                removing_masters=removing_masters, removing_workers=removing_workers)


def migrate_record(record):
    """A record of any schema version, as the current schema has it."""
    record = dict(record or {})
    if not record:
        return record
    if "schema_version" not in record:  # schema 0: the Swarm-only record of the first release
        record["master_hosts"] = record.pop("managers", [])
        record["worker_hosts"] = record.pop("workers", [])
        record["removing_masters"] = record.pop("removing_managers", [])
        record["removing_workers"] = record.pop("removing_workers", [])
        record.setdefault("coe", "swarm")
        record.setdefault("contract_version", 1)
        record["schema_version"] = 1
    if record["schema_version"] > RECORD_SCHEMA:
        raise ValueError("the cluster record has schema version %s, newer than this release reads (%d); "
                         "upgrade rax.carina" % (record["schema_version"], RECORD_SCHEMA))
    return record


def api_url(contract, endpoint):
    """The URL the COE's own tools use, from the contract's template and the endpoint address."""
    return contract["api_url"].format(endpoint=endpoint) if endpoint else ""


SSH_PUBLIC_KEY_RE = re.compile(r"^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9@.-]+) "
                               r"[A-Za-z0-9+/]+=*( [^\n]*)?$")


def authorized_key_problems(keys):
    """The users' SSH public keys the hosts let in (one OpenSSH public key per entry, no options, no newline)."""
    if keys is None:
        return []
    if not isinstance(keys, list):
        return ["authorized_keys must be a list of SSH public keys"]
    return ["authorized_keys[%d] is not one SSH public key (type, base64 key, optional comment): %.40r"
            % (index, key) for index, key in enumerate(keys)
            if not (isinstance(key, str) and SSH_PUBLIC_KEY_RE.fullmatch(key))]


def check(spec, contract, recorded=None):
    """Every problem of a spec, each saying what to change; [] when it may go ahead.

    `spec`: name, coe, operation, masters, nodes, provider, provider options (openstack), subnet,
    extra_sans, remove, hosts (static). `contract`: the COE's contract, or None when the COE
    does not exist. Nothing here reads or writes anything.
    """
    recorded = recorded or {}
    problems = name_problems(spec.get("name"))
    operation = spec.get("operation", "create")
    if operation not in OPERATIONS:
        problems.append("operation %r: choose one of %s" % (operation, ", ".join(OPERATIONS)))
        return problems
    if contract is None:
        problems.append("coe %r is not supported; choose one of: %s" % (
            spec.get("coe"), ", ".join(spec.get("coes") or []) or "none installed"))
        return problems
    problems += operation_problems(contract, operation)
    if operation == "delete":
        return problems
    problems += provider_problems(spec.get("provider"), spec.get("openstack") or {})
    if spec.get("hosts") is not None:
        problems += static_problems(spec["hosts"], spec.get("static") or {})
    problems += count_problems(contract, spec.get("masters"), spec.get("nodes"))
    problems += san_problems(spec.get("extra_sans"))
    problems += authorized_key_problems(spec.get("authorized_keys"))
    problems += coe_option_problems(spec, contract, recorded)
    if spec.get("provider") == "local" and is_count(spec.get("masters")) and is_count(spec.get("nodes")):
        # Every host is up at once during a scale: the ones that stay, come and go, and the load balancer.
        leaving = len(recorded.get("removing_masters") or []) + len(recorded.get("removing_workers") or [])
        rec_workers = recorded.get("worker_hosts") or []
        removed = [n for n in spec.get("remove") or [] if n in rec_workers]
        needed = max(spec["masters"], len(recorded.get("master_hosts") or [])) + \
            max(spec["nodes"] + len(removed), len(rec_workers)) + leaving + 1
        problems += subnet_problems(spec.get("subnet") or recorded.get("subnet") or "", needed)
    elif spec.get("subnet"):
        problems += subnet_problems(spec["subnet"], 0)
    if spec.get("subnet") and spec["subnet"] != recorded.get("subnet"):
        problems += subnet_range_problems(spec["subnet"], spec.get("allow_public_subnet"), spec.get("machine_routes"))
    if spec.get("remove"):
        workers = recorded.get("worker_hosts") or []
        # A worker the record already has leaving (a scale that stopped half-way, run again) is known too.
        unknown = [n for n in spec["remove"] if n not in workers and n not in (recorded.get("removing_workers") or [])]
        if operation != "scale":
            problems.append("remove is for the scale operation")
        elif unknown:
            hint = " (masters are removed by lowering their count)" if any(
                n in (recorded.get("master_hosts") or []) for n in unknown) else ""
            problems.append("cannot remove %s: not %s of cluster %s (%s: %s)%s" % (
                ", ".join(unknown), contract["roles"]["worker"]["plural"], spec.get("name"),
                contract["roles"]["worker"]["plural"], ", ".join(workers) or "none", hint))
    problems += change_problems(spec, recorded)
    return problems


def change_problems(spec, recorded):
    """What an existing cluster's record forbids: another COE or provider, or a create with other counts."""
    if not recorded:
        if spec.get("operation") == "scale":
            return ["cluster %s was not found in its state folder; create it first (a job that starts with no "
                    "state takes it from where the cluster keeps it with carina_state_from_store=true)"
                    % spec.get("name")]
        return []
    if recorded.get("name") not in (None, spec.get("name")):
        return ["the state folder belongs to cluster %s, not %s; choose another state_dir"
                % (recorded.get("name"), spec.get("name"))]
    problems = []
    given = (spec.get("hosts") or {}).get("master")
    kept = [n for n in recorded.get("master_hosts") or [] if n in (given or [])]
    if given is not None and recorded.get("master_hosts") and not kept:
        problems.append("none of the masters %s stays: keep at least one of them in the inventory, and replace "
                        "masters a few at a time" % ", ".join(recorded["master_hosts"]))
    for key in ("coe", "provider"):
        if recorded.get(key) not in (None, spec.get(key)):
            problems.append("%s cannot change (%s -> %s); delete and create the cluster"
                            % (key, recorded.get(key), spec.get(key)))
    if spec.get("operation") == "create" and spec.get("hosts") is None:
        changes = ["%s %s -> %s" % (key, recorded.get(key), spec.get(key))
                   for key in ("masters", "nodes") if key in recorded and recorded[key] != spec.get(key)]
        if spec.get("subnet") and recorded.get("subnet") and recorded["subnet"] != spec["subnet"]:
            changes.append("subnet %s -> %s" % (recorded["subnet"], spec["subnet"]))
        if changes:
            problems.append("cluster %s already exists with another spec (%s); change the counts with the scale "
                            "operation, or delete the cluster first" % (spec.get("name"), ", ".join(changes)))
    return problems


def fill(spec, contract, recorded=None):
    """The spec with what was left out filled in: counts and provider options from the record, else defaults."""
    recorded = recorded or {}
    out = dict(spec)
    out.setdefault("operation", "create")
    out["remove"] = list(dict.fromkeys(out.get("remove") or []))  # each name once
    out["extra_sans"] = list(out.get("extra_sans") or [])
    # Given once (at create), kept by the record for every later run: hosts a scale adds let the same users in.
    out["authorized_keys"] = list(out.get("authorized_keys") or recorded.get("authorized_keys") or [])
    out["provider"] = out.get("provider") or recorded.get("provider") or "local"
    inventory = out.pop("inventory_hosts", None)
    if out["provider"] in INVENTORY_PROVIDERS:
        inventory = inventory or {}
        out["hosts"] = dict(master=list(inventory.get("master") or []), worker=list(inventory.get("worker") or []))
        before = dict(recorded.get("static") or {})
        given = dict((k, v) for k, v in (out.get("static") or {}).items() if v not in (None, "", []))
        out["static"] = dict((key, given.get(key, before.get(key, default)))
                             for key, default in STATIC_DEFAULTS.items())
    else:
        out.pop("hosts", None)
        out["static"] = {}
    hosts = out.get("hosts")
    if hosts is not None:
        out["masters"] = len(hosts.get("master") or [])
        out["nodes"] = len(hosts.get("worker") or [])
    if contract is not None and out["operation"] != "delete":
        if out.get("masters") is None:
            out["masters"] = len(recorded.get("master_hosts") or []) or contract["masters"].get("default", 1)
        if out.get("nodes") is None:
            workers = recorded.get("worker_hosts")
            removed = [n for n in out["remove"] if n in (workers or [])]
            out["nodes"] = (max(0, len(workers) - len(removed)) if workers is not None
                            else contract["workers"].get("default", 1))
    out["openstack"] = fill_openstack(out.get("openstack"), recorded) if out["provider"] == "openstack" else {}
    if out["operation"] != "delete":
        out["coe_options"] = fill_coe_options(out.get("coe_options"), recorded, contract)
    return out


def plan(spec, contract, recorded=None):
    """Fill, check and plan a spec in one call; raises SpecError with every problem."""
    recorded = migrate_record(recorded or {})
    filled = fill(spec, contract, recorded)
    problems = check(filled, contract, recorded)
    filled.pop("machine_routes", None)
    if problems:
        raise SpecError(spec.get("name"), problems)
    if filled["operation"] == "delete":
        return filled
    filled.update(plan_hosts(filled, contract, recorded))
    filled["lb"] = host_name(filled["name"], contract, "lb", 0)
    return filled
