"""The `threegate` command line: argparse and dispatch only.

Each subcommand lives in its own module of this package and defines

    def register(subparsers) -> None   # adds one or more parsers, each with set_defaults(func=run)

Modules are discovered at start-up, so adding a command touches no shared file. Command modules import their
heavy dependencies (jax, the checkpoint readers, the trainers) inside `run`, so `threegate --help` is fast.

User errors (`ThreegateError`, `ValueError`, `TypeError`, `OSError`) end in one line on stderr and exit status 2;
`--debug` re-raises them with their traceback.
"""

import argparse
import importlib
import pkgutil
import sys
from importlib.metadata import PackageNotFoundError, version

__all__ = ["build_parser", "main"]


def _version() -> str:
    try:
        return version("threegate")
    except PackageNotFoundError:
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="threegate",
        description="Put the Three-Gate theory of RLVR weight updates (arXiv 2511.08567) under test.",
    )
    parser.add_argument("--version", action="version", version=f"threegate {_version()}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from threegate.errors import ThreegateError

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ThreegateError, ValueError, TypeError, OSError) as err:
        if args.debug:
            raise
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"threegate {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"threegate {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
