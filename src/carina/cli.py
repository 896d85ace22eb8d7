"""carina: create, list, use, scale and delete container clusters from the command line.

A thin shell over carina.api: an action returns at once with the cluster *_IN_PROGRESS; --wait
follows the run to its end (Ctrl-C detaches, the run goes on).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import sys
import time
from pathlib import Path

import yaml

from carina import __version__, coes, paths, planning
from carina.api import CarinaError, Client
from carina.store import RUN_ACTIVE, Conflict, Run

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_DETACHED = 0, 1, 2, 124, 130
OUTPUTS = ("table", "json", "yaml")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def plain(text: str, stream=None) -> str:
    """Text for a stream: colour codes only when the stream is a terminal."""
    return text if (stream or sys.stdout).isatty() else ANSI.sub("", text)


def emit(args, data, text: str) -> None:
    if args.output == "json":
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    elif args.output == "yaml":
        # Through JSON first: what JSON cannot carry (times, paths) becomes text the same way.
        print(yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=True, default_flow_style=False),
              end="")
    else:
        print(text)


def age(ts: float | None) -> str:
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def cluster_text(cluster, health=None) -> str:
    lines = [
        f"name:          {cluster.name}",
        f"status:        {cluster.status}",
        f"status_reason: {cluster.status_reason or '-'}",
        f"coe:           {cluster.coe}",
        f"provider:      {cluster.provider}",
        f"masters:       {cluster.masters}",
        f"nodes:         {cluster.nodes}",
        f"endpoint:      {cluster.endpoint or '-'}",
        f"api_url:       {cluster.api_url or '-'}",
        f"subnet:        {cluster.subnet or '-'}",
        f"coe_options:   {options_text(cluster.coe_options)}",
        f"last run:      {cluster.current_run or '-'}",
    ]
    if health is not None:
        lines.append(f"health:        {health.status} ({health.reason})")
    return "\n".join(lines)


def options_text(options: dict) -> str:
    """name=value, ... of a cluster's COE options as given (bools as true/false); '-' for none."""
    if not options:
        return "-"
    return ", ".join(f"{key}={json.dumps(value) if isinstance(value, bool) else value}"
                     for key, value in sorted(options.items()))


def option_pair(text: str) -> tuple[str, str]:
    """--option NAME=VALUE, split at the first '='; the value is typed later, by the COE's contract."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=VALUE")
    return name.strip(), value


class Progress:
    """Live view of a run: a bar on a terminal, plain lines otherwise."""

    def __init__(self, client: Client, run: Run, stream=None):
        self.client = client
        self.run = run
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.after = -1
        self.tasks: list[str] = []
        self.counts = {"ok": 0, "changed": 0, "failed": 0, "skipped": 0, "unreachable": 0}
        self.expected = self._expected_tasks()
        self.started = time.time()

    def _expected_tasks(self) -> int:
        """Task count of the last successful run of the same action, to size the bar."""
        for run in reversed(self.client.runs()):
            if run.action == self.run.action and run.status == "successful" and run.id != self.run.id:
                starts = [e for e in self.client.events(run.id) if e["event"] == "playbook_on_task_start"]
                return len({e["task"] for e in starts}) or 40
        return 40

    def poll(self) -> None:
        for event in self.client.events(self.run.id, self.after):
            self.after = event["counter"]
            name = event["event"]
            if name == "playbook_on_task_start" and event["task"] not in self.tasks:
                self.tasks.append(event["task"])
                if not self.tty:
                    print(f"[{time.time() - self.started:6.1f}s] TASK {event['task']}", file=self.stream, flush=True)
            elif name.startswith("runner_on_"):
                kind = name.removeprefix("runner_on_")
                if kind == "ok" and "changed: [" in event["stdout"]:
                    kind = "changed"
                if kind in self.counts:
                    self.counts[kind] += 1
        if self.tty:
            done = min(len(self.tasks), self.expected)
            width = 24
            filled = int(width * done / max(self.expected, 1))
            current = self.tasks[-1] if self.tasks else "starting"
            line = (f"\r[{'#' * filled}{'-' * (width - filled)}] {time.time() - self.started:5.0f}s "
                    f"ok={self.counts['ok']} changed={self.counts['changed']} failed={self.counts['failed']} "
                    f"| {current}")
            print(line[:160].ljust(160), end="", file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=self.stream)


def wait_for(client: Client, run: Run, args) -> int:
    progress = Progress(client, run)
    deadline = time.time() + args.timeout if getattr(args, "timeout", None) else None
    try:
        while True:
            progress.poll()
            current = client.run(run.id)
            if current.status not in RUN_ACTIVE:
                progress.poll()
                progress.close()
                break
            if deadline and time.time() > deadline:
                progress.close()
                print(f"carina: {run.action} of {run.cluster} not done within {args.timeout:g} s; run {run.id} goes "
                      f"on (`carina logs {run.id} --follow`, `carina cancel {run.id}`)", file=sys.stderr)
                return EXIT_TIMEOUT
            time.sleep(0.5)
    except KeyboardInterrupt:
        progress.close()
        print(f"detached: run {run.id} goes on. Follow it with `carina logs {run.id} --follow`, "
              f"stop it with `carina cancel {run.id}`.", file=sys.stderr)
        return EXIT_DETACHED
    try:
        cluster = client.get(run.cluster)
    except CarinaError:
        cluster = None
    if current.status != "successful":
        print(f"carina: {run.action} of {run.cluster} {current.status}: {current.reason}", file=sys.stderr)
        if args.output == "json":
            emit(args, {"run": current.as_dict(), "cluster": cluster.as_dict() if cluster else None}, "")
        return EXIT_FAILED
    if cluster is None:
        emit(args, {"run": current.as_dict(), "cluster": None}, f"{run.cluster} deleted")
    else:
        emit(args, {"run": current.as_dict(), "cluster": cluster.as_dict()}, cluster_text(cluster))
    return EXIT_OK


def started(client: Client, args, cluster, run) -> int:
    if args.wait:
        print(f"{cluster.name}: {cluster.status} (run {run.id})", file=sys.stderr)
        return wait_for(client, run, args)
    emit(args, {"cluster": cluster.as_dict(), "run": run.as_dict()},
         f"{cluster.name}: {cluster.status} (run {run.id}); `carina get {cluster.name}` shows its status")
    return EXIT_OK


def cmd_create(client: Client, args) -> int:
    openstack = {key: getattr(args, key) for key in ("cloud", "flavor", "master_flavor", "fixed_network",
                                                     "fixed_subnet", "external_network", "master_server_type",
                                                     "server_type", "resource_class", "ssh_cidr") if getattr(args, key)}
    if args.floating_ip:
        openstack["floating_ip_enabled"] = True
    if args.api_cidr:
        openstack["api_cidrs"] = args.api_cidr
    cluster, run = client.create(args.name, coe=args.coe, masters=args.masters, nodes=args.nodes,
                                 provider=args.provider, subnet=args.subnet or "", extra_sans=args.extra_san,
                                 openstack=openstack or None, inventory=args.inventory,
                                 coe_options=dict(args.option) or None,
                                 allow_public_subnet=args.allow_public_subnet)
    return started(client, args, cluster, run)


def cmd_ls(client: Client, args) -> int:
    clusters = client.list()
    width = max([7, *(len(c.coe) for c in clusters)])  # the longest COE name
    rows = [f"{'NAME':<20} {'COE':<{width}} {'MASTERS':>7} {'NODES':>5} {'STATUS':<20} URL"]
    rows += [f"{c.name:<20} {c.coe:<{width}} {c.masters:>7} {c.nodes:>5} {c.status:<20} {c.api_url or '-'}"
             for c in clusters]
    emit(args, [c.as_dict() for c in clusters], "\n".join(rows))
    return EXIT_OK


def cmd_get(client: Client, args) -> int:
    cluster = client.get(args.name)
    health = client.health(args.name)
    data = cluster.as_dict() | {"health": health.status, "health_reason": health.reason}
    emit(args, data, cluster_text(cluster, health))
    return EXIT_OK


def cmd_credentials(client: Client, args) -> int:
    path = client.credentials(args.name, Path(args.path or args.name))
    shell_file = client.coe(args.name).shells().get("bash")
    emit(args, {"path": str(path)},
         f"credentials of {args.name} in {path}" + (f"; source {path}/{shell_file}" if shell_file else ""))
    return EXIT_OK


def cmd_env(client: Client, args) -> int:
    script = client.env(args.name, args.shell)
    if args.output == "table":
        sys.stdout.write(script)
    else:
        emit(args, {"cluster": args.name, "shell": args.shell, "env": client.env_vars(args.name), "script": script},
             "")
    return EXIT_OK


def cmd_grow(client: Client, args) -> int:
    cluster, run = client.grow(args.name, args.by)
    return started(client, args, cluster, run)


def cmd_resize(client: Client, args) -> int:
    if args.nodes is None and args.masters is None and not args.remove:
        raise CarinaError("resize needs --nodes, --masters or --remove")
    cluster, run = client.resize(args.name, nodes=args.nodes, masters=args.masters, remove=args.remove)
    return started(client, args, cluster, run)


def cmd_repair(client: Client, args) -> int:
    cluster, run = client.repair(args.name)
    return started(client, args, cluster, run)


def cmd_rm(client: Client, args) -> int:
    cluster, run = client.delete(args.name)
    return started(client, args, cluster, run)


def cmd_runs(client: Client, args) -> int:
    runs = client.runs(args.name)
    rows = [f"{'RUN':<13} {'ACTION':<7} {'STATUS':<11} {'STARTED':<20} {'SECONDS':>7} REASON"]
    for run in runs:
        seconds = f"{(run.finished_at or time.time()) - run.started_at:7.1f}"
        rows.append(f"{run.id:<13} {run.action:<7} {run.status:<11} {age(run.started_at):<20} {seconds} "
                    f"{run.reason[:80]}")
    emit(args, [r.as_dict() for r in runs], "\n".join(rows))
    return EXIT_OK


def cmd_logs(client: Client, args) -> int:
    run = client.run(args.run)
    after = -1
    while True:
        for event in client.events(run.id, after):
            after = event["counter"]
            if args.output == "json":
                print(json.dumps(event, default=str), flush=True)
            elif args.output == "yaml":
                print(yaml.safe_dump([json.loads(json.dumps(event, default=str))], sort_keys=True), end="", flush=True)
            elif event["stdout"]:
                print(plain(event["stdout"]), flush=True)
        run = client.run(run.id)
        if not args.follow or run.status not in RUN_ACTIVE:
            break
        time.sleep(0.5)
    if args.output == "table":
        print(f"-- run {run.id} ({run.action} {run.cluster}): {run.status}{': ' + run.reason if run.reason else ''}")
    return EXIT_OK if run.status in ("successful", *RUN_ACTIVE) else EXIT_FAILED


def cmd_cancel(client: Client, args) -> int:
    run = client.cancel(args.run)
    emit(args, run.as_dict(), f"run {run.id}: {run.status}")
    return EXIT_OK


def registry_choices() -> tuple[list[str] | None, list[str] | None, list[str] | None]:
    """COEs, providers and shells for the parser; None (any value, checked later) without a collection."""
    try:
        names = coes.names()
        shells = sorted({shell for name in names for shell in coes.get(name).shells()})
        return names, list(planning.providers()), shells
    except CarinaError:
        return None, None, None


def add_create_options(p: argparse.ArgumentParser, coe_names: list[str] | None,
                       providers: list[str] | None) -> None:
    p.add_argument("name")
    p.add_argument("--coe", choices=coe_names,
                   help="container orchestration engine (default: " + (default_coe() or "the collection's") + ")")
    p.add_argument("--masters", type=int, help="masters, by the COE's rules (its contract gives the default)")
    p.add_argument("--nodes", type=int, help="workers (its contract gives the default)")
    p.add_argument("--provider", default="local", choices=providers, help="where hosts come from")
    p.add_argument("--subnet", help="local: network of the cluster (default: a free /24 of 198.18.0.0/16); a "
                                    "private range the machine does not route")
    p.add_argument("--allow-public-subnet", action="store_true", help="accept a public range as --subnet")
    p.add_argument("--inventory", metavar="PATH",
                   help="static: Ansible inventory whose groups masters and workers (and lb) name the hosts")
    os_group = p.add_argument_group("provider openstack")
    os_group.add_argument("--cloud", help="named cloud of clouds.yaml (default: OS_CLOUD)")
    os_group.add_argument("--flavor", help="flavor of workers (m1.small)")
    os_group.add_argument("--master-flavor", help="flavor of masters (the worker flavor)")
    os_group.add_argument("--fixed-network", help="network of the hosts (private)")
    os_group.add_argument("--fixed-subnet", help="subnet of the load balancer VIP (private-subnet)")
    os_group.add_argument("--external-network", help="network of floating IPs (public)")
    os_group.add_argument("--floating-ip", action="store_true", help="floating IPs on hosts and the VIP")
    os_group.add_argument("--master-server-type", choices=["vm", "bm"], help="masters on Nova (vm) or Ironic (bm)")
    os_group.add_argument("--server-type", choices=["vm", "bm"], help="workers on Nova (vm) or Ironic (bm)")
    os_group.add_argument("--resource-class", help="resource class of bare metal nodes (baremetal)")
    os_group.add_argument("--ssh-cidr", help="who may reach the hosts' SSH port, as a CIDR (0.0.0.0/0); the "
                                             "controller must be inside it")
    os_group.add_argument("--api-cidr", action="append", metavar="CIDR",
                          help="who may reach the COE's API, as a CIDR (repeatable; default anywhere); the "
                               "cluster's own subnet is always let in")
    p.add_argument("--extra-san", action="append", default=[], help="more names/addresses in master certificates")
    p.add_argument("--option", "-O", action="append", default=[], type=option_pair, metavar="NAME=VALUE",
                   help="an option of the COE, typed by its contract (repeatable; an unknown NAME is refused with "
                        "the list of the COE's options; an empty VALUE means the default)")
    add_wait(p)


def add_serve_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, metavar="FILE", help="config file (TOML: [service], [keystone], [cloud])")
    p.add_argument("--bind", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 9511; 0 picks a free one)")
    p.add_argument("--pidfile", type=Path, metavar="FILE", help="write the pid there while serving")


def add_wait(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", action="store_true", help="follow the run to its end")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="with --wait, stop following after SECONDS (exit 124; the run goes on)")


def cmd_serve(_client, args) -> int:
    """The service in the foreground: Magnum's API (and the panel) on the config's address, until SIGTERM."""
    from carina.service import server  # noqa: PLC0415 - the service's modules load for serve only
    from carina.service.app import App  # noqa: PLC0415

    config = server.Config.load(args.config, bind=args.bind, port=args.port, pidfile=args.pidfile,
                                home=args.home if args.home else None)
    os.environ["CARINA_HOME"] = str(config.home)
    server.main_log()
    app = App(config)

    def ready(httpd):
        host, port = httpd.server_address[:2]
        shown = f"[{host}]" if ":" in host else host
        mode = "Keystone tokens" if config.keystone else "one local tenant, no login"
        print(f"carina serve: http://{shown}:{port}/v1 (Magnum API), {mode}; state in {config.home}", flush=True)

    server.serve(config, app, ready)
    return EXIT_OK


def cmd_completion(_client, args) -> int:
    sys.stdout.write(completion(args.shell))
    return EXIT_OK


def completion(shell: str) -> str:
    """A completion script for `shell`: the verbs, each verb's options, cluster names from `carina ls`."""
    verbs = {}
    for action in parser()._subparsers._group_actions:  # argparse keeps its subparsers here
        for name, sub in action.choices.items():
            verbs[name] = sorted(o for a in sub._actions for o in a.option_strings if o.startswith("--"))
    names = ("carina ls -o json 2>/dev/null"
             " | python3 -c 'import json,sys; print(*(c[\"name\"] for c in json.load(sys.stdin)))'")
    if shell == "bash":
        cases = "\n".join(f'    {verb}) opts="{" ".join(opts)}" ;;' for verb, opts in verbs.items())
        return f"""# carina completion for bash: eval "$(carina completion bash)"
_carina() {{
  local cur=${{COMP_WORDS[COMP_CWORD]}} verb=${{COMP_WORDS[1]}} opts=""
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "{" ".join(verbs)} --output --home --version --help" -- "$cur")); return
  fi
  case "$verb" in
{cases}
  esac
  if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  else COMPREPLY=($(compgen -W "$({names})" -- "$cur")); fi
}}
complete -F _carina carina
"""
    lines = ["# carina completion for fish: carina completion fish | source",
             "complete -c carina -f",
             f"complete -c carina -n __fish_use_subcommand -a '{' '.join(verbs)}'",
             f"complete -c carina -n 'not __fish_use_subcommand' -a '({names})'"]
    for verb, opts in verbs.items():
        lines += [f"complete -c carina -n '__fish_seen_subcommand_from {verb}' -l {o[2:]}" for o in opts]
    return "\n".join(lines) + "\n"


def default_coe() -> str:
    try:
        return coes.default()
    except CarinaError:
        return ""


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="carina", description="Instant-on container clusters.")
    top.add_argument("--version", action="version", version=f"carina {__version__}")
    # The global options go before or after the verb: after it, they win; the verb's parser has no
    # default of its own, so one given before the verb is kept.
    top.add_argument("--output", "-o", choices=OUTPUTS, default="table", help="output format")
    top.add_argument("--home", metavar="PATH", help="carina's folder (default: CARINA_HOME, else ~/.carina)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--output", "-o", choices=OUTPUTS, default=argparse.SUPPRESS, help="output format")
    common.add_argument("--home", metavar="PATH", default=argparse.SUPPRESS,
                        help="carina's folder (default: CARINA_HOME, else ~/.carina)")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, func, help_text):
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    coe_names, providers, shells = registry_choices()
    add_create_options(add("create", cmd_create, "create a cluster (returns at once; --wait follows it)"),
                       coe_names, providers)
    add("ls", cmd_ls, "list clusters")
    p = add("get", cmd_get, "show a cluster: status, reason, endpoint, counts, health")
    p.add_argument("name")
    p = add("credentials", cmd_credentials, "copy a cluster's credentials bundle into a folder")
    p.add_argument("name")
    p.add_argument("--path", help="folder (default ./NAME)")
    p = add("env", cmd_env, "print what to eval to point the COE's own client at a cluster")
    p.add_argument("name")
    p.add_argument("--shell", default="bash", choices=shells, help="shell of the output (default bash)")
    p = add("grow", cmd_grow, "add workers")
    p.add_argument("name")
    p.add_argument("--by", type=int, required=True, help="number of workers to add")
    add_wait(p)
    p = add("resize", cmd_resize, "set the number of workers (and masters); removed workers are drained first")
    p.add_argument("name")
    p.add_argument("--nodes", type=int, help="workers wanted")
    p.add_argument("--masters", type=int, help="masters wanted, by the COE's rules")
    p.add_argument("--remove", action="append", default=[], metavar="NODE", help="worker to remove first (by name)")
    add_wait(p)
    p = add("repair", cmd_repair, "replace lost hosts and remove what they left in the control plane")
    p.add_argument("name")
    add_wait(p)
    p = add("rm", cmd_rm, "delete a cluster")
    p.add_argument("name")
    add_wait(p)
    p = add("runs", cmd_runs, "list the runs of a cluster")
    p.add_argument("name", nargs="?")
    p = add("logs", cmd_logs, "print the events of a run")
    p.add_argument("run")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the run ends")
    p = add("cancel", cmd_cancel, "stop a run")
    p.add_argument("run")
    add_serve_options(add("serve", cmd_serve, "run the service (Magnum's API) in the foreground until SIGTERM"))
    p = add("completion", cmd_completion, "print a shell completion script (bash: eval \"$(carina completion bash)\")")
    p.add_argument("shell", choices=["bash", "fish"])
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.home:
        os.environ["CARINA_HOME"] = str(Path(args.home).expanduser())
    try:
        code = args.func(None if args.func in (cmd_completion, cmd_serve) else Client(), args)
        sys.stdout.flush()
        return code
    except (CarinaError, Conflict) as exc:
        print(f"carina: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_DETACHED
    except BrokenPipeError:
        # The reader went away (`carina ls | head -1`): say so once; nothing more goes to stdout.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print("carina: the output was closed before carina had written it all", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"carina: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_FAILED
    except sqlite3.Error as exc:
        print(f"carina: the store in {paths.home()} cannot be used: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
