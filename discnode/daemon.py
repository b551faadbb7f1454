"""The process behind `discnode serve`: the peer API, and nothing the command line needs.

`discnode serve` checks its options and the node's home, then replaces itself with this module
(exec: the same process ID, so systemd, signals and exit codes are unaffected). The command line's
libraries (typer, click, rich, and pydantic, which typer loads to convert options) would otherwise
stay resident for the months a node runs, serving nothing: measured, the daemon idles at ~54 MB
instead of ~66 MB. Its arguments are an internal interface; administrators use `discnode serve`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

#: The signals that stop the node cleanly (systemd sends SIGTERM; Ctrl-C is SIGINT).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def hold_stop_signals() -> None:
    """Block the stop signals in this process. The signal mask survives exec, so a SIGTERM that
    arrives while the daemon is starting waits (pending) for its handlers instead of killing it
    half-started; `catch_stop_signals` then takes it."""
    if hasattr(signal, "pthread_sigmask"):  # POSIX
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def catch_stop_signals() -> threading.Event:
    """From now until the event loop installs its own handlers, a stop signal only sets the
    returned event (which serve_forever checks once its handlers are in place). Then unblock, so a
    signal held since before exec is delivered here."""
    requested = threading.Event()

    def early(signum: int, frame: object) -> None:
        requested.set()

    for sig in STOP_SIGNALS:
        signal.signal(sig, early)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    return requested


def exec_daemon(home: Path, *, rate_limit: float, advertise: bool, verbose: bool, ui_port: int = 0,
                passphrase_file: Path | None = None) -> None:
    """Replace this process with the daemon. Returns (None) only where exec is unavailable, in
    which case the caller serves in-process."""
    argv = [sys.executable, "-m", "discnode.daemon", "--home", str(home.resolve()), "--rate-limit", repr(rate_limit)]
    argv += [] if advertise else ["--no-advertise"]
    argv += ["--verbose"] if verbose else []
    argv += ["--ui-port", str(ui_port)] if ui_port else []
    argv += ["--passphrase-file", str(passphrase_file.resolve())] if passphrase_file else []
    if os.name != "posix":
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    hold_stop_signals()
    try:
        os.execv(sys.executable, argv)
    except OSError:
        return None  # serve() unblocks them


def serve(home_path: Path, *, rate_limit: float, advertise: bool, verbose: bool, ui_port: int = 0) -> None:
    """Run the node until SIGINT or SIGTERM; DiscnodeError for anything the administrator can fix."""
    # Before aiohttp loads: frozenlist's pure-Python list, not its C++ extension, which brings
    # libstdc++ (~0.9 MB resident) for aiohttp's signal lists, read once at start and once a reply
    # (benchmarks/README.md, "Serving RSS"). frozenlist's own switch; it changes nothing else.
    os.environ.setdefault("FROZENLIST_NO_EXTENSIONS", "1")
    from .errors import DiscnodeError
    from .home import Home
    from .server import Limits, serve_forever
    from .text import PrintableLogs

    # Before any thread starts: the node's threads share two malloc heaps, not one each (memory.py).
    from . import memory
    memory.limit_arenas(memory.ARENAS)
    stop_requested = catch_stop_signals()
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(PrintableLogs())
    home = Home.open(home_path)
    home.identity  # an encrypted key opens now (keyfile.py), or the daemon stops with one line
    if stop_requested.is_set():
        logging.getLogger("discnode.daemon").info("stopped before it started serving")
        return  # nothing to clean up

    async def run() -> None:
        try:
            await serve_forever(home, Limits(rate=rate_limit, burst=max(int(rate_limit * 2), 1)),
                                advertise=advertise, ui_port=ui_port, stop_requested=stop_requested.is_set)
        finally:
            # Closing the loop restores the default (fatal) actions: a second stop signal during
            # that teardown must not turn a clean exit into death by signal. Held, it dies with us.
            hold_stop_signals()

    # Everything loaded so far (modules, compiled schemas, keys) lives as long as the daemon; frozen,
    # the collector's full passes no longer walk it on every one of them while serving.
    import gc
    gc.collect()
    gc.freeze()
    from .audit import acting
    from .loops import run as run_loop
    try:
        # Served in-process from `discnode serve` (where exec is unavailable): the command's actor
        # must not become every peer request's. Local faces set their own (forward.py, web).
        with acting(""):
            run_loop(run())  # uvloop where installed (loops.py)
    except OSError as exc:
        raise DiscnodeError(f"cannot listen on {home.config.host}:{home.config.port}: {exc.strerror}") from None


def main(argv: list[str] | None = None) -> int:
    from .errors import DiscnodeError

    parser = argparse.ArgumentParser(prog="discnode serve", description="Internal: run `discnode serve` instead.")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--rate-limit", type=float, default=200.0)
    parser.add_argument("--no-advertise", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--ui-port", type=int, default=0)
    parser.add_argument("--passphrase-file", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        if args.passphrase_file is not None:
            from . import keyfile
            keyfile.use_passphrase_file(args.passphrase_file)
        serve(args.home, rate_limit=args.rate_limit, advertise=not args.no_advertise, verbose=args.verbose,
              ui_port=args.ui_port)
    except DiscnodeError as exc:
        from .text import printable
        print(f"error: {printable(exc)}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
