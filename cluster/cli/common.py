"""What every ``kraftpy`` console command shares: the exit codes, the one-line error, the client options.

The commands fail the way a script needs: one line on stderr and an exit code that says who is at fault:

* 0 ok;
* 1 the cluster refused (a Kafka error code; the line names it, e.g. ``TOPIC_ALREADY_EXISTS``);
* 2 usage or connection problem (bad arguments or input, unreachable ``--bootstrap-server``).

``run_command`` is where a command's coroutine becomes that exit code, so no command handles errors itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine

from cluster.client import (
    BrokerConnectionError,
    KafkaClient,
)
from cluster.core.errors import KafkaError
from cluster.wire.compression import CODEC_NAMES

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
EXIT_OK, EXIT_KAFKA_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130
CLIENT_ID = "kraftpy-cli"

COMPRESSION_IDS = {name: codec for codec, name in CODEC_NAMES.items()}
ACKS = {"0": 0, "1": 1, "all": -1, "-1": -1}


class UsageError(Exception):
    """Bad arguments or input: exit code 2."""


def print_error(message: str) -> None:
    print(f"kraftpy: error: {message}", file=sys.stderr)


def run_command(coroutine_fn: Callable[[argparse.Namespace], Coroutine], args: argparse.Namespace) -> int:
    """Runs a command's coroutine and turns its outcome into an exit code and one line on stderr."""
    try:
        return asyncio.run(coroutine_fn(args)) or EXIT_OK
    except UsageError as exc:
        print_error(str(exc))
        return EXIT_USAGE
    except BrokerConnectionError as exc:
        print_error(f"cannot reach broker {exc}")
        return EXIT_USAGE
    except KafkaError as exc:  # KafkaResponseError, UNSUPPORTED_VERSION from negotiation, corrupt records
        print_error(str(exc))
        return EXIT_KAFKA_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): not an error.  Point stdout at /dev/null so the
        # interpreter's final flush does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def kafka_client(args: argparse.Namespace) -> KafkaClient:
    try:
        return KafkaClient(args.bootstrap_server, client_id=CLIENT_ID,
                           connect_timeout_ms=args.connect_timeout_ms, request_timeout_ms=args.request_timeout_ms)
    except ValueError as exc:
        raise UsageError(f"--bootstrap-server: {exc}") from None


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--bootstrap-server", default=DEFAULT_BOOTSTRAP, metavar="HOST:PORT",
                        help=f"broker(s) to bootstrap from, comma-separated (default {DEFAULT_BOOTSTRAP})")
    common.add_argument("--request-timeout-ms", type=positive_int, default=30_000, help=argparse.SUPPRESS)
    common.add_argument("--connect-timeout-ms", type=positive_int, default=10_000, help=argparse.SUPPRESS)
    return common


def join_ids(node_ids) -> str:
    return ",".join(str(n) for n in node_ids)
