"""The `bookstore` command: `bookstore up`, `bookstore serve SERVICE` and
`bookstore certs --out DIR`; `bookstore chaos SCENARIO`; `bookstore simulate`."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bookstore import event_loop, logs
from bookstore.chaos import filter as chaos_filter
from bookstore.chaos.control import rules_path
from bookstore.identity import plaintext_warning, tls_dir
from bookstore.settings import EXIT_CONFIG, SERVICES, Settings, SettingsError, get_settings
from bookstore.telemetry.metrics import MetricsServer, metrics_bind_address, serve_metrics
from bookstore.telemetry.tracing import setup_tracing

# SERVICE name -> module whose `serve(settings, replica_id)` coroutine runs it.
MODULES = {name: f"bookstore.{name.replace('-', '_')}.service" for name in SERVICES}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bookstore", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the whole system on this machine")
    up.add_argument("--no-color", action="store_true", help="plain log prefixes")
    up.add_argument(
        "--chaos", action="store_true", help="fault injection on (panel, load, scenarios)"
    )
    chaos = sub.add_parser("chaos", help="play a fault scenario under load (bookstore up --chaos)")
    chaos.add_argument("scenario", help="kill-leader, pause-leader or split-executors")
    serve = sub.add_parser("serve", help="run one service in the foreground")
    serve.add_argument("service", choices=SERVICES)
    serve.add_argument(
        "--replica-id", type=int, default=None, help="order-executor or books-database replica id"
    )
    certs = sub.add_parser(
        "certs", help="make (or renew) the CA and every service's certificate in a directory"
    )
    certs.add_argument(
        "--out", default=None, help="the directory (default: BOOKSTORE_DATA_DIR/tls)"
    )
    simulate = sub.add_parser(
        "simulate", help="run the protocol cores under a seeded simulator, with faults"
    )
    simulate.add_argument("--seed", type=int, default=None, help="run (replay) this seed only")
    simulate.add_argument("--seeds", type=int, default=100, help="run seeds 0..N-1 (100)")
    simulate.add_argument("--checkouts", type=int, default=50, help="per seed (50)")
    simulate.add_argument("--mutant", default="", help="switch on one deliberate bug")
    simulate.add_argument("--list-mutants", action="store_true", help="name the bug zoo")
    simulate.add_argument("--html", default=None, help="draw a failing run in this file")
    return parser


def make_certs(settings: Settings, out: Path) -> list[str]:
    """The CA and a certificate for every service of `settings` in `out`
    (kept where still valid); the names of the files made anew."""
    from bookstore.identity import certs, identities_of

    return certs.ensure(out, identities_of(settings))


def _certs(out: str | None) -> int:
    settings = get_settings()
    directory = Path(out) if out else tls_dir(settings)
    made = make_certs(settings, directory)
    print(f"bookstore certs: {directory}: made {', '.join(made) if made else 'nothing'}")
    return 0


def serve(service: str, replica_id: int | None) -> int:
    settings = get_settings()
    if service in ("order-executor", "books-database") and replica_id is None:
        raise SettingsError(f"{service} needs --replica-id N")
    name = service if replica_id is None else f"{service}-{replica_id}"
    logs.setup(name, settings.log_level)
    if settings.chaos:
        chaos_filter.configure(name, rules_path(settings.data_dir))
    if warning := plaintext_warning(settings):
        logging.getLogger("bookstore").warning(warning)
    from bookstore.identity.credentials import use_identity

    use_identity(settings, service, replica_id)
    setup_tracing(service, replica_id)
    metrics_server = _serve_metrics(settings, service, replica_id)
    module = importlib.import_module(MODULES[service])
    try:
        event_loop.run(
            module.serve(settings, replica_id),
            use_uvloop=settings.uvloop,
            gc_freeze=settings.gc_freeze,
        )
    finally:
        if metrics_server is not None:
            metrics_server.close()
    return 0


def _serve_metrics(
    settings: Settings, service: str, replica_id: int | None
) -> MetricsServer | None:
    """A gRPC service's metrics port (the orchestrator serves /metrics itself).

    A port that cannot be bound costs the metrics, not the service: logged, not fatal.
    """
    if service == "orchestrator":
        return None
    address = metrics_bind_address(settings, service, replica_id)
    if address is None:
        return None
    try:
        return serve_metrics(address)
    except OSError as exc:
        logging.getLogger("bookstore").error("metrics not served on %s: %s", address, exc)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return serve(args.service, args.replica_id)
        if args.command == "certs":
            return _certs(args.out)
        if args.command == "simulate":
            from bookstore.simulation import command

            return command.main(args)
        if args.command == "chaos":
            from bookstore.chaos import cli as chaos_cli

            return chaos_cli.main(get_settings(), args.scenario)
        from bookstore import launcher, portcheck

        settings = get_settings()
        busy = portcheck.busy_ports(settings)
        if busy:
            for problem in busy:
                print(f"bookstore up: {problem}", file=sys.stderr)
            print(
                "bookstore up: nothing started; stop what holds the ports (another"
                " `bookstore up`?) or set the *_ADDRESS variables to free ports",
                file=sys.stderr,
            )
            return 1
        if warning := plaintext_warning(settings):
            print(f"bookstore up: warning: {warning}", file=sys.stderr)
        else:
            make_certs(settings, tls_dir(settings))
        if args.chaos:
            settings = dataclasses.replace(settings, chaos=True)
        return launcher.main(settings, color=not args.no_color)
    except SettingsError as exc:  # MissingCertificate too
        print(f"bookstore: configuration error: {exc}", file=sys.stderr)
        # A code of its own: `bookstore up` gives up on a service that exits with it.
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
