"""The `buildsdk` command: `docker build`'s flags on top of the SDK, plus a few helpers.

Why it is shaped this way: the command is the SDK's end-to-end proof, so it adds no
protocol knowledge of its own. Flags are turned into a `BuildOptions` (whose validation
messages are the command's usage errors), the request is the one `Client` sends, and a dry
run prints that very request without sending it (it only asks the engine's `/_ping` for the
API version, as a build would; a Control API dry run also asks `Control/ListWorkers` for the
image store, as buildx does, and prints `describe_control_build`'s plan). What belongs to
the command alone is the Docker CLI's reading of its flags (and buildx's, for `-o`,
`--push`, `--load`, `--metadata-file`):

* booleans take pflag's `--flag=false` form (`1 t T TRUE true True 0 f F FALSE false False`);
* `-f` is relative to the current directory (the SDK's `dockerfile` is relative to the
  context), and `-f -` reads the Dockerfile from stdin;
* `--build-arg KEY` takes KEY's value from the environment, or sends KEY without a value
  (JSON `null`) when it is not set there, like `opts.ConvertKVStringsToMapWithNil`;
* `--label k` means the empty value; repeated `--ulimit` names keep the last one;
* a PATH of `-` reads a tar archive (or a lone Dockerfile) from stdin.

Exit statuses: 0 success, 1 the build (or the engine) failed, 2 bad usage or an invalid
option (reported before connecting), 3 no engine could be reached (or what answered is not
one: its `/_ping` failed, reported in docker's words).

Unlike the Docker CLI, a Git or HTTP(S) URL is handed to the engine as `remote` instead of
being fetched by the command.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import functools
import gc
import getpass
import io
import json
import os
import shutil
import signal
import sys
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final, Literal, NoReturn, Protocol, TextIO, TypeVar

from pydantic import ValidationError

from buildsdk._base_client import describe
from buildsdk._build_plan import BuildPlan, SessionNeeds, describe_control_build
from buildsdk._cache_output import disk_usage_text, prune_text
from buildsdk._control_plan import choose_endpoint, content_stores, read_only_stores
from buildsdk._named_contexts import context_kind
from buildsdk._protocol import common_headers
from buildsdk._session_options import BuildSecret, SSHForward
from buildsdk.build import (
    REMOTE_PREFIXES,
    BuildOptions,
    BuildOutput,
    ContainerLimits,
    query_string,
)
from buildsdk.buildkit.control import (
    CONTROL_LIST_WORKERS,
    CONTROL_SOLVE,
    CONTROL_STATUS,
    ControlChannel,
)
from buildsdk.buildkit.metadata import metadata_from_image_id
from buildsdk.buildkit.solve import (
    ImageStore,
    ListWorkersRequest,
    ListWorkersResponse,
    image_store,
)
from buildsdk.cache import CachePruneOptions, buildkit_filters, engine_prune_request
from buildsdk.client import Client, endpoint_for
from buildsdk.context import BuildContext, list_context
from buildsdk.dockerignore import PatternMatcher, read_dockerignore
from buildsdk.errors import (
    APIError,
    BuildError,
    BuildSDKError,
    ContextError,
    EngineTimeout,
    EngineUnreachable,
    GrpcCallError,
    UnsupportedEngine,
    UnsupportedOption,
)
from buildsdk.outputs import (
    BinaryWriter,
    DockerOutput,
    OCIOutput,
    Output,
    TarOutput,
    parse_outputs,
)
from buildsdk.progress import (
    PlainProgress,
    Progress,
    QuietProgress,
    RawJsonProgress,
    TtyProgress,
    human_size,
    render,
)
from buildsdk.prune import PruneOptions
from buildsdk.versions import BUILD_PARAM_MIN_VERSION, MAX_API_VERSION, ApiVersion

__all__ = [
    "EXIT_BUILD_FAILED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "build_options_from_args",
    "main",
    "parse_args",
    "run",
]

EXIT_OK: Final = 0
"""The command did what it was asked."""
EXIT_BUILD_FAILED: Final = 1
"""The build failed, or the engine refused or broke off the request."""
EXIT_USAGE: Final = 2
"""Bad usage or an invalid option; nothing was sent."""
EXIT_UNREACHABLE: Final = 3
"""No engine could be reached at the address tried, or what answered there failed `/_ping`."""

_BOOL_FLAGS: Final = (
    "--no-cache",
    "--pull",
    "--quiet",
    "--rm",
    "--force-rm",
    "--squash",
    "--compress",
    "--dry-run",
    "--all",
    "--json",
    "--push",
    "--load",
    "--verbose",
    "--force",
)
_PROGRESS_MODES: Final = ("auto", "plain", "tty", "rawjson", "quiet")
_ENDPOINTS: Final = ("auto", "build", "grpc")
_DRY_RUN_FORMATS: Final = ("text", "json")
_CONTROL_TIMEOUT: Final = 30.0
_SHORT_BOOLS: Final = {"-q": "--quiet", "-a": "--all"}
_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_FALSE_SUFFIX: Final = "\x00false"
_SECRET_HEADER_WORDS: Final = ("auth", "token", "cookie", "secret", "password", "key")


class _UsageError(Exception):
    """A command line the command cannot act on; printed with exit status 2."""


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so `main` can return the status."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: {message}")


# -- parsing ------------------------------------------------------------------------------


class _AddsArguments(Protocol):
    """A parser or an argument group: what flags are added to."""

    def add_argument(self, *names: str, **kwargs: Any) -> argparse.Action: ...


class _Flags:
    """The command's own table of the flags that take a value (True for short ones), filled
    as the parser is built from it: `_normalize` needs them before argparse parses, and
    argparse keeps its list of actions to itself."""

    def __init__(self) -> None:
        self.value_flags: dict[str, bool] = {}

    def add(self, target: _AddsArguments, *names: str, **kwargs: Any) -> None:
        """Add a flag (or positional argument) to `target` and note it if it takes a value."""
        action = target.add_argument(*names, **kwargs)
        if action.option_strings and action.nargs is None:
            for option in action.option_strings:
                self.value_flags[option] = not option.startswith("--")


def _normalize(argv: Sequence[str], value_flags: Mapping[str, bool]) -> list[str]:
    """Rewrite pflag's readings into forms argparse understands.

    `--flag=VALUE` of a boolean flag becomes the flag or its hidden negation; an option's
    value in the next word is glued to it, so values starting with `-` (`--build-arg -x=1`,
    `-f -`) are values, as in pflag, and not taken for options.
    """
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            out.extend(argv[i - 1 :])
            break
        name, sep, value = arg.partition("=")
        name = _SHORT_BOOLS.get(name, name) if sep else name
        if sep and name in _BOOL_FLAGS:
            if value in _TRUE:
                out.append(name)
            elif value in _FALSE:
                out.append(name + _FALSE_SUFFIX)
            else:
                raise _UsageError(
                    f'buildsdk: invalid argument "{value}" for "{name}" flag: '
                    "expected true or false"
                )
        elif arg in value_flags and i < len(argv):
            short = value_flags[arg]
            out.append(f"{arg}{argv[i]}" if short else f"{arg}={argv[i]}")
            i += 1
        else:
            out.append(arg)
    return out


def _add_bool(
    parser: argparse.ArgumentParser, *names: str, dest: str, default: bool, help: str
) -> None:
    parser.add_argument(*names, dest=dest, action="store_true", default=default, help=help)
    long = next(n for n in names if n.startswith("--"))
    parser.add_argument(
        long + _FALSE_SUFFIX, dest=dest, action="store_false", help=argparse.SUPPRESS
    )


def _engine_flags(flags: _Flags) -> _ArgumentParser:
    parent = _ArgumentParser(add_help=False)
    group = parent.add_argument_group("engine")
    flags.add(group, "-H", "--host", help="engine address (default: DOCKER_HOST or context)")
    flags.add(group, "--context", dest="docker_context", help="docker context to use")
    flags.add(
        group, "--api-version", help="API version to speak instead of negotiating (e.g. 1.41)"
    )
    return parent


def _build_parser() -> tuple[argparse.ArgumentParser, dict[str, bool]]:
    """The command's parser, and every flag of it that takes a value (True for short ones)."""
    flags = _Flags()
    parser = _ArgumentParser(
        prog="buildsdk",
        description="Build images through the Docker Engine API (docker build's flags).",
        allow_abbrev=False,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    engine = _engine_flags(flags)

    build = sub.add_parser(
        "build",
        parents=[engine],
        help="build an image from a directory, URL or stdin (-)",
        allow_abbrev=False,
    )
    flags.add(build, "path", metavar="PATH | URL | -", help="the build context")
    flags.add(build, "-t", "--tag", action="append", default=[], help="name:tag (repeatable)")
    flags.add(
        build, "-f", "--file", help="Dockerfile, relative to the current directory; - for stdin"
    )
    flags.add(build, "--build-arg", action="append", default=[], help="KEY=VALUE or KEY")
    flags.add(build, "--label", action="append", default=[], help="KEY=VALUE image label")
    _add_bool(build, "--no-cache", dest="no_cache", default=False, help="do not use the cache")
    _add_bool(build, "--pull", dest="pull", default=False, help="always pull base images")
    _add_bool(build, "-q", "--quiet", dest="quiet", default=False, help="print only the ID")
    _add_bool(build, "--rm", dest="rm", default=True, help="remove intermediate containers")
    _add_bool(build, "--force-rm", dest="force_rm", default=False, help="always remove them")
    flags.add(build, "-m", "--memory", help="memory limit (e.g. 512m)")
    flags.add(build, "--memory-swap", help="memory plus swap limit, -1 for unlimited swap")
    flags.add(build, "-c", "--cpu-shares", type=_int64, help="relative CPU weight")
    flags.add(build, "--cpuset-cpus", help="CPUs to use (0-3, 0,1)")
    flags.add(build, "--cpuset-mems", help="memory nodes to use (0-3, 0,1)")
    flags.add(build, "--cpu-period", type=_int64, help="CFS period in microseconds")
    flags.add(build, "--cpu-quota", type=_int64, help="CFS quota in microseconds")
    flags.add(build, "--shm-size", help="size of /dev/shm (e.g. 128m)")
    flags.add(build, "--ulimit", action="append", default=[], help="name=soft[:hard]")
    flags.add(build, "--add-host", action="append", default=[], help="host:ip or host=ip")
    flags.add(build, "--network", help="network mode of RUN instructions")
    flags.add(
        build,
        "--platform",
        action="append",
        default=[],
        help="target platform os[/arch[/variant]] (default: DOCKER_DEFAULT_PLATFORM); several "
        "as a comma list or repeated, as buildx (BuildKit's Control API: an image index)",
    )
    flags.add(build, "--target", help="build stage to stop at")
    flags.add(
        build,
        "--cache-from",
        action="append",
        default=[],
        help="cache source: an image reference, or as buildx type=local,src=DIR | "
        "type=registry,ref=REF (those use the Control API)",
    )
    flags.add(
        build,
        "--cache-to",
        action="append",
        default=[],
        help="cache export as buildx: type=inline | type=local,dest=DIR[,mode=max] | "
        "type=registry,ref=REF[,mode=max] (BuildKit, Control API)",
    )
    flags.add(build, "--cgroup-parent", help="parent cgroup of RUN containers")
    flags.add(build, "--isolation", help="container isolation (default, process, hyperv)")
    flags.add(build, "--security-opt", action="append", default=[], help="security option")
    _add_bool(build, "--squash", dest="squash", default=False, help="squash new layers")
    _add_bool(build, "--compress", dest="compress", default=False, help="gzip the context")
    flags.add(
        build,
        "--iidfile",
        help="write the image ID to this file (refused with a local or tar output, as buildx)",
    )
    flags.add(
        build,
        "--metadata-file",
        help="write the build's result metadata to this file as JSON, as docker buildx; a "
        "POST /build build has no exporter response, so it holds only "
        "containerimage.config.digest (the image ID) and image.name (the tags)",
    )
    flags.add(
        build,
        "--builder",
        choices=("classic", "buildkit"),
        help="builder to use (default, as docker: DOCKER_BUILDKIT if set, BuildKit for --output, "
        "--secret, --ssh, else the one the engine prefers)",
    )
    flags.add(
        build,
        "-o",
        "--output",
        action="append",
        default=[],
        help="BuildKit output as buildx reads it: type=TYPE[,KEY=VALUE...] (CSV: quote a "
        "value holding a comma), DIR for type=local,dest=DIR, - for a tar on stdout",
    )
    _add_bool(
        build,
        "--push",
        dest="push",
        default=False,
        help="push the image: type=image,push=true (BuildKit)",
    )
    _add_bool(
        build,
        "--load",
        dest="load",
        default=False,
        help="keep the image in the engine's image store: type=docker (BuildKit)",
    )
    flags.add(
        build,
        "--endpoint",
        choices=_ENDPOINTS,
        default="auto",
        help="where the build is sent: build (POST /build), grpc (BuildKit's Control API, "
        "POST /grpc) or auto (default: the Control API for a BuildKit build on Docker 23+ "
        "and for what POST /build cannot carry, such as oci/docker archives, --push or "
        "several outputs; else POST /build)",
    )
    flags.add(
        build,
        "--secret",
        action="append",
        default=[],
        help="secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR (BuildKit)",
    )
    flags.add(
        build,
        "--ssh",
        action="append",
        default=[],
        help="ssh for RUN --mount=type=ssh: default|ID[=SOCKET|KEY[,KEY...]] (an agent "
        "socket, or private key files; BuildKit)",
    )
    flags.add(
        build,
        "--build-context",
        action="append",
        default=[],
        help="a named context: NAME=DIR, NAME=docker-image://REF, NAME=URL (git or https) or "
        "NAME=oci-layout://DIR[:TAG][@DIGEST] (an OCI layout directory, read-only; containerd "
        "image store); the Dockerfile reads it with FROM NAME or COPY --from=NAME (BuildKit's "
        "Control API)",
    )
    flags.add(
        build,
        "--context-transfer",
        choices=("auto", "tar", "session"),
        default="auto",
        help="tar: upload the context; session: BuildKit pulls only changed files; auto "
        "(default): session for BuildKit when buildsdk[session] is installed, else tar",
    )
    flags.add(
        build,
        "--progress",
        choices=_PROGRESS_MODES,
        help="how to show progress (default: BUILDKIT_PROGRESS, else auto: tty when the "
        "output is a terminal, plain otherwise; the output is stderr for BuildKit, stdout "
        "for the classic builder, as in docker)",
    )
    _add_bool(
        build,
        "--dry-run",
        dest="dry_run",
        default=False,
        help="print the request (in the API version the engine's /_ping negotiates), send nothing",
    )
    flags.add(
        build,
        "--format",
        dest="dry_run_format",
        choices=_DRY_RUN_FORMATS,
        default="text",
        help="how --dry-run prints: text (default) or json (one object with the endpoint)",
    )
    flags.add(
        build,
        "--provenance",
        help="provenance attestation as buildx: true, false (also no default min provenance), "
        "min, max or mode=max,... (BuildKit's Control API)",
    )
    flags.add(
        build,
        "--sbom",
        help="SBOM attestation as buildx: true, false or generator=IMAGE,... (the engine "
        "pulls the scanner image; BuildKit's Control API)",
    )
    flags.add(
        build,
        "--attest",
        action="append",
        default=[],
        help="attestation as buildx: type=provenance|sbom[,disabled=true][,KEY=VALUE...] "
        "(repeatable; BuildKit's Control API)",
    )
    flags.add(
        build,
        "--annotation",
        action="append",
        default=[],
        help="add an annotation to the image: [TYPE[PLATFORM]:]KEY=VALUE, TYPE manifest, "
        "index, manifest-descriptor or index-descriptor (needs -o/--output or --push; "
        "Control API)",
    )
    flags.add(
        build,
        "--no-cache-filter",
        action="append",
        default=[],
        help="do not use the cache for this stage (repeatable; Control API)",
    )
    flags.add(
        build,
        "--allow",
        action="append",
        default=[],
        help="allow an entitlement: network.host, security.insecure (comma-separated or "
        "repeated; Control API; the engine must grant it)",
    )
    build.set_defaults(func=_cmd_build)

    context = sub.add_parser(
        "context", help="list the files a build context would send", allow_abbrev=False
    )
    flags.add(context, "path", nargs="?", default=".", metavar="PATH")
    flags.add(context, "-f", "--file", help="Dockerfile, relative to the current directory")
    _add_bool(context, "--json", dest="json", default=False, help="print JSON")
    flags.add(
        context,
        "--why",
        metavar="PATH",
        help="say which .dockerignore line decides PATH (relative to the context, or absolute)",
    )
    context.set_defaults(func=_cmd_context)

    prune = sub.add_parser("prune", parents=[engine], help="remove build cache", allow_abbrev=False)
    _add_bool(prune, "-a", "--all", dest="all", default=False, help="remove all cache")
    flags.add(prune, "--filter", action="append", default=[], help="KEY=VALUE filter")
    flags.add(prune, "--keep-storage", help="keep this much cache (API <= 1.47)")
    flags.add(prune, "--reserved-space", help="always keep this much cache (API >= 1.48)")
    flags.add(prune, "--max-used-space", help="cache size limit (API >= 1.48)")
    flags.add(prune, "--min-free-space", help="free disk space to keep (API >= 1.48)")
    flags.add(
        prune,
        "--endpoint",
        choices=_ENDPOINTS,
        default="auto",
        help="where the prune is sent: build (POST /build/prune), grpc (BuildKit's "
        "Control/Prune, POST /grpc) or auto (default: Control/Prune on Docker 23+ unless "
        "--max-used-space, --min-free-space or an until timestamp is given; else build)",
    )
    _add_bool(
        prune,
        "--dry-run",
        dest="dry_run",
        default=False,
        help="print the endpoint and the request it would send, remove nothing",
    )
    prune.set_defaults(func=_cmd_prune)

    du = sub.add_parser(
        "du",
        parents=[engine],
        help="show build cache records (docker buildx du, through BuildKit's Control API)",
        allow_abbrev=False,
    )
    flags.add(du, "--filter", action="append", default=[], help="KEY=VALUE filter (buildx's)")
    _add_bool(du, "--verbose", dest="verbose", default=False, help="every field of each record")
    du.set_defaults(func=_cmd_du)

    cache_prune = sub.add_parser(
        "cache-prune",
        parents=[engine],
        help="remove build cache and list what went (docker buildx prune, Control API)",
        allow_abbrev=False,
    )
    _add_bool(
        cache_prune,
        "-a",
        "--all",
        dest="all",
        default=False,
        help="include internal/frontend and shared records",
    )
    flags.add(
        cache_prune, "--filter", action="append", default=[], help="KEY=VALUE filter (until=24h)"
    )
    flags.add(cache_prune, "--keep-storage", help="amount of disk space to keep for cache")
    _add_bool(cache_prune, "--verbose", dest="verbose", default=False, help="every field")
    _add_bool(
        cache_prune, "-f", "--force", dest="force", default=False, help="do not ask to confirm"
    )
    cache_prune.set_defaults(func=_cmd_cache_prune)

    info = sub.add_parser(
        "info", parents=[engine], help="show the engine and its builders", allow_abbrev=False
    )
    info.set_defaults(func=_cmd_info)
    return parser, flags.value_flags


def _int64(value: str) -> int:
    try:
        number = int(value, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {value!r}") from None
    if not -(2**63) <= number < 2**63:
        raise argparse.ArgumentTypeError(f"{value} is out of range for a 64-bit integer")
    return number


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse a command line (without the program name); raises on bad usage."""
    parser, value_flags = _build_parser()
    if argv[:1] == ["cache-prune"]:
        # `-f` names a Dockerfile for `build` but is `--force` here, as in `docker buildx prune`.
        value_flags = {flag: short for flag, short in value_flags.items() if flag != "-f"}
    return parser.parse_args(_normalize(argv, value_flags))


def _build_args(values: Sequence[str], env: Mapping[str, str]) -> dict[str, str | None]:
    args: dict[str, str | None] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if sep:
            args[key] = value
        else:
            args[key] = env.get(key)
    return args


def _labels(values: Sequence[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in values:
        key, _, value = item.partition("=")
        labels[key] = value
    return labels


def _build_contexts(values: Sequence[str], base: Path) -> dict[str, str]:
    """`--build-context` values as buildx reads them: NAME=VALUE, a relative directory taken
    from the working directory; a directory that is not there is refused before connecting,
    in buildx's words."""
    contexts: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"invalid context value: {item}, expected key=value")
        if value and context_kind(value) == "local":
            value = str(base / value)
            if not os.path.exists(value):
                raise ValueError(
                    f"failed to get build context {name}: stat {value}: no such file or directory"
                )
            if not os.path.isdir(value):
                raise ValueError(f"failed to get build context path {value}: not a directory")
        elif value.startswith("oci-layout://") and not value[len("oci-layout://") :].startswith(
            "/"
        ):
            # Like a directory, a relative layout directory is taken from the working directory.
            value = f"oci-layout://{base}/{value[len('oci-layout://') :]}"
        contexts[name] = value
    return contexts


def _ulimits(values: Sequence[str]) -> list[str]:
    by_name: dict[str, str] = {}
    for item in values:
        by_name[item.partition("=")[0]] = item
    return list(by_name.values())


def _output_type(value: str) -> str:
    """The exporter type a `--output` value names, as buildx sees it before --push/--load."""
    if value == "-":
        return "tar"
    try:
        fields = next(csv.reader([value]), [])
    except csv.Error:
        return ""
    if len(fields) == 1 and fields[0] == value and not value.startswith("type="):
        # buildx's short form: the whole value is a directory, even one holding "=".
        return "local"
    kinds = [
        field.partition("=")[2]
        for field in fields
        if field.partition("=")[0].strip().lower() == "type"
    ]
    kind = kinds[-1] if kinds else ""
    # buildx reads type=registry as an image output with push=true.
    return "image" if kind == "registry" else kind


def _outputs(
    values: Sequence[str], *, push: bool, load: bool, iidfile: bool, stdout: BinaryWriter
) -> tuple[Output | BuildOutput, ...]:
    """`-o`, `--push` and `--load` as buildx reads them, with its refusals in its words;
    a `dest` of `-` (or `-o -`) is standard output."""
    values = [value for value in values if value]
    kinds = [_output_type(value) for value in values]
    if push and load:
        raise ValueError("push and load may not be set together at the moment")
    if push and kinds and kinds[0] != "image":
        raise ValueError(f'push and "{kinds[0]}" output can\'t be used together')
    if load and kinds and kinds[0] != "docker":
        raise ValueError(f'load and "{kinds[0]}" output can\'t be used together')
    if iidfile and any(kind in ("local", "tar") for kind in kinds):
        raise ValueError("local and tar exporters are incompatible with image ID file")
    parsed = parse_outputs(
        ["type=tar,dest=-" if v == "-" else v for v in values], push=push, load=load
    )
    outputs: list[Output | BuildOutput] = []
    for output in parsed:
        if isinstance(output, (TarOutput, OCIOutput, DockerOutput)) and output.dest == "-":
            output = output.model_copy(update={"dest": stdout})
        outputs.append(output)
    return tuple(outputs)


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):
        return False


def _ssh_forwards(specs: Sequence[str], base: Path) -> tuple[SSHForward, ...]:
    """`--ssh` values; an encrypted key's passphrase is asked on the terminal, as the Docker
    CLI does. Unusable keys, or an encrypted one without a terminal, raise `ValueError`."""
    forwards: list[SSHForward] = []
    for spec in specs:
        forward = SSHForward.parse(spec, base=base)
        try:
            encrypted = forward.encrypted_keys()
            if encrypted:
                if not _stdin_is_terminal():
                    raise ValueError(
                        f"ssh {forward.id!r}: {encrypted[0]} is encrypted and stdin is not a "
                        "terminal to ask for its passphrase (add the key to an ssh-agent and "
                        "forward that, or give SSHForward(passphrase=...) in code)"
                    )
                # One passphrase opens every encrypted key of an ID (SSHForward holds one).
                passphrase = getpass.getpass(f"Enter passphrase for {encrypted[0]}: ")
                forward = SSHForward(id=forward.id, keys=forward.keys, passphrase=passphrase)
                forward.check()
        except BuildSDKError as exc:
            raise ValueError(str(exc)) from None
        forwards.append(forward)
    return tuple(forwards)


def build_options_from_args(
    args: argparse.Namespace,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stdin: IO[bytes] | None = None,
) -> BuildOptions:
    """Turn parsed `build` arguments into `BuildOptions` as the Docker CLI reads its flags.

    The builder is `--builder`, else DOCKER_BUILDKIT, else BuildKit when a flag needs it
    (`--output`, `--secret`, `--ssh`, `--build-context`, `--context-transfer session`), else
    classic; the command then lets the engine's preference replace that last default.

    Raises `pydantic.ValidationError` for invalid values and `ValueError` for a context path
    or Dockerfile that does not exist; nothing is read from the context yet.
    """
    env = os.environ if env is None else env
    base = Path(os.getcwd() if cwd is None else cwd)
    problems = _Problems()
    # A context that cannot be used is one problem among others: the remaining flags are
    # checked against a stand-in so that everything wrong is reported together.
    stand_in: dict[str, Any] = {"path": str(base)}
    kwargs = problems.attempt(lambda: _context_fields(args, base, stdin), stand_in)

    limits = {
        "memory": args.memory,
        "memswap": args.memory_swap,
        "cpushares": args.cpu_shares,
        "cpusetcpus": args.cpuset_cpus,
        "cpusetmems": args.cpuset_mems,
        "cpuperiod": args.cpu_period,
        "cpuquota": args.cpu_quota,
    }
    limits = {k: v for k, v in limits.items() if v not in (None, "", 0)}
    if limits:
        # Validated on its own so that errors name the field (and so the flag) at fault.
        # Invalid limits are still limits, which BuildKit would ignore: an unvalidated
        # stand-in lets that be reported too (the options are never sent then).
        kwargs["container_limits"] = problems.attempt(
            lambda: ContainerLimits(**limits), ContainerLimits.model_construct(**limits)
        )

    no_outputs: tuple[Output | BuildOutput, ...] = ()
    outputs = problems.attempt(
        lambda: _outputs(
            args.output,
            push=args.push,
            load=args.load,
            iidfile=bool(args.iidfile),
            stdout=sys.stdout.buffer,
        ),
        no_outputs,
    )
    # Secrets, ssh and session transfer need a BuildKit session: they choose BuildKit, as
    # --output does, unless DOCKER_BUILDKIT says no. Otherwise the engine's preference
    # decides (`_cmd_build` asks it); this default is the classic builder.
    secrets: list[BuildSecret] = []
    for spec in args.secret:
        secret: BuildSecret | None = problems.attempt(
            functools.partial(BuildSecret.parse, spec, base=base, env=env), None
        )
        if secret is not None:
            secrets.append(secret)
    no_ssh: tuple[SSHForward, ...] = ()
    ssh = problems.attempt(lambda: _ssh_forwards(args.ssh, base), no_ssh)
    wants_session = bool(args.secret or args.ssh) or args.context_transfer == "session"
    buildkit_flag = problems.attempt(lambda: _buildkit_env(env), None)
    builder = args.builder
    if args.endpoint == "grpc" and (builder == "classic" or buildkit_flag is False):
        problems.add(
            ValueError(
                "--endpoint grpc sends a BuildKit build: it cannot be used with the classic "
                "builder (--builder classic or DOCKER_BUILDKIT=0)"
            )
        )
    if builder is None:
        if args.endpoint == "grpc":
            builder = "buildkit"
        elif buildkit_flag is not None:
            builder = "buildkit" if buildkit_flag else "classic"
        elif (
            args.output
            or args.push
            or args.load
            or wants_session
            or _needs_control(args)
            or args.build_context
            or _typed_cache(args)
        ):
            builder = "buildkit"
        else:
            builder = "classic"
    no_contexts: dict[str, str] = {}
    fields: dict[str, Any] = {
        "tag": tuple(args.tag),
        "quiet": args.quiet,
        "nocache": args.no_cache,
        "rm": args.rm,
        "pull": args.pull,
        "forcerm": args.force_rm,
        "buildargs": _build_args(args.build_arg, env),
        "gzip": args.compress,
        "shmsize": args.shm_size or None,
        "labels": _labels(args.label),
        "cache_from": tuple(args.cache_from),
        "target": args.target,
        "network_mode": args.network,
        "squash": args.squash or None,
        "extra_hosts": tuple(args.add_host),
        "platform": ",".join(args.platform) or env.get("DOCKER_DEFAULT_PLATFORM") or None,
        "isolation": args.isolation or None,
        "ulimits": _ulimits(args.ulimit),
        "cgroup_parent": args.cgroup_parent,
        "security_opt": tuple(args.security_opt),
        "outputs": tuple(outputs),
        "secrets": tuple(secrets),
        "ssh": ssh,
        "context_transfer": args.context_transfer,
        "version": "2" if builder == "buildkit" else "1",
        "build_endpoint": args.endpoint,
        "provenance": args.provenance,
        "sbom": args.sbom,
        "attest": tuple(args.attest),
        "build_contexts": problems.attempt(
            lambda: _build_contexts(args.build_context, base), no_contexts
        ),
        "annotations": tuple(args.annotation),
        "no_cache_filter": tuple(args.no_cache_filter),
        # pflag reads --allow as a string slice: comma-separated values, repeatable.
        "allow": tuple(item for value in args.allow for item in value.split(",") if item),
        "cache_to": tuple(args.cache_to),
        **kwargs,
    }
    try:
        options: BuildOptions | None = BuildOptions(**fields)
    except ValidationError as exc:
        problems.add(exc)
        # Without the fields at fault, so that what the builder objects to comes too.
        faulty = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
        try:
            options = BuildOptions(**{k: v for k, v in fields.items() if k not in faulty})
        except ValidationError:
            options = None
    version = problems.attempt(
        lambda: ApiVersion.parse(args.api_version) if args.api_version else MAX_API_VERSION,
        MAX_API_VERSION,
    )
    if options is not None and choose_endpoint(options) == "build":
        # What the builder would ignore, or a pinned API version would not carry; the
        # engine's own version is checked again once it answers. The Control API has
        # rules of its own, checked when its request is described.
        for unsupported in options.unsupported(version):
            problems.add(unsupported)
    problems.raise_if_any()
    assert options is not None
    return options


def _context_fields(
    args: argparse.Namespace, base: Path, stdin: IO[bytes] | None
) -> dict[str, Any]:
    """The context and Dockerfile fields of `BuildOptions`; `ValueError` when unusable."""
    kwargs: dict[str, Any] = {}
    path: str = args.path
    stdin_dockerfile = args.file == "-"
    if path == "-":
        if stdin_dockerfile:
            raise ValueError(
                "invalid argument: can't use stdin for both build context and Dockerfile"
            )
        data = stdin if stdin is not None else sys.stdin.buffer
        reader, is_archive = _sniff_archive(data)
        kwargs["fileobj"] = reader
        kwargs["custom_context"] = is_archive
    elif path.startswith(REMOTE_PREFIXES):
        kwargs["path"] = path
    else:
        directory = base / path
        if not directory.is_dir():
            raise ValueError(f'unable to prepare context: path "{path}" not found')
        kwargs["path"] = str(directory)
    if stdin_dockerfile:
        data = stdin if stdin is not None else sys.stdin.buffer
        kwargs["fileobj"] = io.BytesIO(data.read())
    elif args.file is not None:
        if "path" in kwargs and not path.startswith(REMOTE_PREFIXES):
            dockerfile = base / args.file
            if not dockerfile.is_file():
                raise ValueError(
                    f"unable to prepare context: the Dockerfile ({args.file}) does not exist"
                )
            kwargs["dockerfile"] = str(dockerfile.resolve())
        else:
            kwargs["dockerfile"] = args.file
    return kwargs


_T = TypeVar("_T")


class _Problems:
    """What is wrong with one command line, collected so that it is all reported at once."""

    def __init__(self) -> None:
        self.errors: list[ValidationError | ValueError | UnsupportedOption | _UsageError] = []

    def add(self, error: ValidationError | ValueError | UnsupportedOption | _UsageError) -> None:
        """Note one problem."""
        self.errors.append(error)

    def attempt(self, func: Callable[[], _T], fallback: _T) -> _T:
        """`func()`, or `fallback` after noting why it failed."""
        try:
            return func()
        except (ValidationError, ValueError, UnsupportedOption, _UsageError) as exc:
            self.errors.append(exc)
            return fallback

    def raise_if_any(self) -> None:
        """Raise the one problem as it is, or every problem in one `ValueError`."""
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            lines = [
                str(error if isinstance(error, _UsageError) else _usage_from(error))
                for error in self.errors
            ]
            raise ValueError("\n".join(lines))


def _typed_cache(args: argparse.Namespace) -> bool:
    """Whether a cache flag needs BuildKit: any --cache-to, a --cache-from in buildx's CSV."""
    return bool(args.cache_to) or any("=" in value for value in args.cache_from)


def _buildkit_env(env: Mapping[str, str]) -> bool | None:
    """DOCKER_BUILDKIT as docker reads it (Go's ParseBool), or None when it is not set."""
    value = env.get("DOCKER_BUILDKIT", "")
    if value == "":
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(
        f"DOCKER_BUILDKIT environment variable expects boolean value: {value!r} is not one"
    )


class _Prefixed(io.RawIOBase):
    """A reader that returns `head` first, then the rest of `tail` (stdin after a peek)."""

    def __init__(self, head: bytes, tail: IO[bytes]) -> None:
        self._head = head
        self._tail = tail

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        if self._head:
            if size < 0:
                data, self._head = self._head + self._tail.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._tail.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _sniff_archive(stream: IO[bytes]) -> tuple[IO[bytes], bool]:
    """Peek at stdin: a tar (plain or compressed) is a context, anything else a Dockerfile."""
    head = b""
    while len(head) < 512:
        chunk = stream.read(512 - len(head))
        if not chunk:
            break
        head += chunk
    compressed = head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd"))
    is_tar = len(head) >= 262 and head[257:262] == b"ustar"
    reader: IO[bytes] = io.BufferedReader(_Prefixed(head, stream))
    return reader, compressed or is_tar


# -- running ------------------------------------------------------------------------------


def run() -> NoReturn:
    """Run the `buildsdk` command as a process (the script and `python -m buildsdk`) and exit.

    `main()` is for callers that keep running; this is for a process that ends with it.
    """
    status = main()
    # The interpreter's exit runs several full garbage collections over every object alive,
    # 0.15-0.2 s after a build (pydantic's validators are slow to traverse). The process
    # ends here: collect once, so objects that are garbage now are finalized as usual, then
    # freeze the survivors so those collections skip them.
    gc.collect()
    gc.freeze()
    sys.exit(status)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `buildsdk` command with `argv` (default: `sys.argv[1:]`); return the status."""
    try:
        args = parse_args(list(sys.argv[1:] if argv is None else argv))
    except _UsageError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help and --version print and "exit" with 0
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except _UsageError as exc:
        print(f"buildsdk: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EngineUnreachable as exc:
        print(f"buildsdk: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except APIError as exc:
        # Only a failed `/_ping` gets here (the commands report every other APIError).
        print(f"buildsdk: {_docker_wording(exc)}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        print("buildsdk: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:
        # The reader went away (`buildsdk context | head`); say nothing more to it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BUILD_FAILED


_FLAG_OF_FIELD: Final = {
    "memory": "--memory",
    "memswap": "--memory-swap",
    "cpushares": "--cpu-shares",
    "cpusetcpus": "--cpuset-cpus",
    "cpusetmems": "--cpuset-mems",
    "cpuperiod": "--cpu-period",
    "cpuquota": "--cpu-quota",
    "tag": "--tag",
    "buildargs": "--build-arg",
    "labels": "--label",
    "shmsize": "--shm-size",
    "cache_from": "--cache-from",
    "target": "--target",
    "network_mode": "--network",
    "extra_hosts": "--add-host",
    "platform": "--platform",
    "isolation": "--isolation",
    "ulimits": "--ulimit",
    "cgroup_parent": "--cgroup-parent",
    "security_opt": "--security-opt",
    "outputs": "--output",
    "dockerfile": "--file",
    "rm": "--rm",
    "forcerm": "--force-rm",
    "squash": "--squash",
    "secrets": "--secret",
    "ssh": "--ssh",
    "context_transfer": "--context-transfer",
    "provenance": "--provenance",
    "sbom": "--sbom",
    "attest": "--attest",
    "build_contexts": "--build-context",
    "filters": "--filter",
    "keep_storage": "--keep-storage",
    "reserved_space": "--reserved-space",
    "max_used_space": "--max-used-space",
    "min_free_space": "--min-free-space",
    "annotations": "--annotation",
    "no_cache_filter": "--no-cache-filter",
    "allow": "--allow",
    "cache_to": "--cache-to",
}


def _needs_control(args: argparse.Namespace) -> bool:
    """Whether the flags ask for what only BuildKit's Control API builds: several platforms,
    attestations, annotations, uncached stages or entitlements (so BuildKit is the builder,
    as with --output)."""
    platforms = ",".join(args.platform).split(",")
    attestations = bool(args.provenance or args.sbom or args.attest)
    others = bool(args.annotation or args.no_cache_filter or args.allow)
    return len(platforms) > 1 or attestations or others


def _usage_from(exc: ValidationError | ValueError | UnsupportedOption) -> _UsageError:
    """Say what is wrong in the user's words: flag names rather than model fields."""
    if isinstance(exc, ValidationError):
        lines = []
        for error in exc.errors(include_url=False, include_input=False):
            names = [str(part) for part in error["loc"] if not isinstance(part, int)]
            flag = next((_FLAG_OF_FIELD[n] for n in names if n in _FLAG_OF_FIELD), None)
            where = flag or ".".join(names) or "options"
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"invalid {where}: {message}")
        return _UsageError("\n".join(lines))
    if isinstance(exc, UnsupportedOption):
        flag = _FLAG_OF_FIELD.get(exc.option)
        return _UsageError(f"{flag}: {exc}" if flag else str(exc))
    return _UsageError(str(exc))


def _ping_failed(exc: BaseException) -> bool:
    """Whether `exc` is an error answer to `/_ping`: what listens there is not an engine."""
    return isinstance(exc, APIError) and exc.path.endswith("/_ping")


def _docker_wording(exc: APIError) -> str:
    # The client's message is already docker's sentence when the answer had no body;
    # otherwise docker prefixes what came back.
    if exc.message.startswith("request returned "):
        return exc.message
    return f"Error response from daemon: {exc.message}"


def _client(args: argparse.Namespace) -> Client:
    try:
        return Client(args.host, context=args.docker_context, api_version=args.api_version)
    except (ValueError, ValidationError) as exc:
        raise _usage_from(exc) from None


def _terminal_size(stream: TextIO) -> tuple[int, int]:
    # The view is drawn on `stream` (stderr), which may be a terminal while stdout is not.
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        size = shutil.get_terminal_size()
    return size.columns or 80, size.lines or 24


def _choose_progress(args: argparse.Namespace, *, buildkit: bool) -> Progress:
    mode = "quiet" if args.quiet else args.progress
    if mode is None:
        mode = os.environ.get("BUILDKIT_PROGRESS", "").strip().lower()
        if mode not in _PROGRESS_MODES:
            mode = "auto"
    # As docker: BuildKit's progress goes to stderr, the classic builder's output to stdout
    # (so `buildsdk build ctx > log` keeps it).
    out = sys.stderr if buildkit else sys.stdout
    if mode == "auto":
        tty = out.isatty() and os.environ.get("TERM", "") != "dumb"
        mode = "tty" if tty else "plain"
    if mode == "tty":
        columns, lines = _terminal_size(out)
        return TtyProgress(out, width=columns, height=lines)
    if mode == "plain":
        return PlainProgress(out)
    if mode == "rawjson":
        return RawJsonProgress(sys.stdout)
    return QuietProgress()


def _follow_the_engine(
    args: argparse.Namespace, options: BuildOptions, client: Client
) -> BuildOptions:
    """`options` with BuildKit when the command line left the builder to its default and
    the engine prefers BuildKit (`Builder-Version: 2` on `/_ping`, Docker 23+), as docker
    does; options BuildKit cannot honour are then refused, all at once."""
    if args.builder is not None or _buildkit_env(os.environ) is not None:
        return options
    if options.version != "1" or client.ping().builder_version != "2":
        return options
    options = options.model_copy(update={"version": "2"})
    refused = options.unsupported(client.api_version())
    if refused:
        raise _UsageError(
            "the engine prefers BuildKit (Builder-Version: 2), which cannot honour these "
            "options; remove them, or choose the classic builder with --builder classic "
            "or DOCKER_BUILDKIT=0:\n"
            + "\n".join(f"  {_usage_from(problem)}" for problem in refused)
        )
    return options


def _cmd_build(args: argparse.Namespace) -> int:
    if args.dry_run_format != "text" and not args.dry_run:
        raise _UsageError("--format applies to --dry-run only")
    try:
        options = build_options_from_args(args)
        pinned = ApiVersion.parse(args.api_version) if args.api_version else None
        # Options the builder would ignore (or a pinned API version would not carry) are
        # refused here, before connecting; the engine's own version is checked again later.
        if choose_endpoint(options) == "build":
            options.to_query(pinned or MAX_API_VERSION)
    except (ValidationError, ValueError, UnsupportedOption) as exc:
        raise _usage_from(exc) from None
    if args.dry_run:
        return _dry_run(args, options)
    if args.iidfile:
        # Like the CLI: a stale ID file must not survive a failed build.
        Path(args.iidfile).unlink(missing_ok=True)
    client = _client(args)
    err = sys.stderr
    progress: Progress | None = None
    try:
        with client:
            options = _follow_the_engine(args, options, client)
            progress = _choose_progress(args, buildkit=options.version == "2")
            with client.build(options) as build:
                render(build, progress)
            result = build.result()
    except BuildError as exc:
        if isinstance(progress, QuietProgress):
            # Quiet hid the output; a failure shows it, as `docker build -q` does.
            err.write(progress.text)
        if not (isinstance(progress, (PlainProgress, TtyProgress)) and progress.reported_error):
            print(exc.message, file=err)
        return EXIT_BUILD_FAILED
    except (UnsupportedOption, ValidationError) as exc:
        print(f"buildsdk: {_usage_from(exc)}", file=err)
        return EXIT_USAGE
    except ContextError as exc:
        print(f"buildsdk: unable to prepare context: {exc}", file=err)
        return EXIT_BUILD_FAILED
    except EngineUnreachable:
        raise
    except (APIError, EngineTimeout, BuildSDKError) as exc:
        if _ping_failed(exc):
            raise
        print(f"buildsdk: {exc}", file=err)
        return EXIT_BUILD_FAILED
    if result.image_id and (args.quiet or isinstance(progress, QuietProgress)):
        print(result.image_id)
    if args.iidfile and result.image_id:
        Path(args.iidfile).write_text(result.image_id)
    if args.metadata_file:
        metadata: dict[str, Any] = {}
        if result.build_ref:
            # A Control API build: the exporter response, as buildx writes it.
            metadata = result.metadata()
        elif result.image_id:
            metadata = metadata_from_image_id(
                result.image_id, options.tag, containerd_store=_containerd_store(client)
            )
        Path(args.metadata_file).write_text(json.dumps(metadata, indent=2) + "\n")
    return EXIT_OK


def _containerd_store(client: Client) -> bool:
    """Whether the engine keeps images in containerd (asked as buildx asks, ListWorkers);
    False when it cannot tell (no Control API: Podman, or the session extra missing)."""
    try:
        return _image_store(client) == "containerd"
    except (BuildSDKError, OSError):
        return False


# -- dry run ------------------------------------------------------------------------------


def _describe_registry_config(value: str) -> str:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(value.encode("ascii")))
    except (ValueError, UnicodeError):
        return "<not decodable>"
    hosts = sorted(decoded) if isinstance(decoded, dict) else []
    noun = "registry" if len(hosts) == 1 else "registries"
    return f"<{len(hosts)} {noun}" + (": " + ", ".join(hosts) if hosts else "") + ">"


def _mask_header(name: str, value: str) -> str:
    if name.lower() == "x-registry-config":
        return _describe_registry_config(value)
    if any(word in name.lower() for word in _SECRET_HEADER_WORDS):
        return "<masked>"
    return value


def _dry_run_version(args: argparse.Namespace, client: Client) -> tuple[ApiVersion, str]:
    """The API version the build would be sent in, and a line saying where it comes from.

    Only `/_ping` is asked (as a build would, first); without an answer the version is the
    highest buildsdk speaks, and the line says an engine may negotiate a lower one.
    """
    if args.api_version:
        return ApiVersion.parse(args.api_version), ""
    pinned = os.environ.get("DOCKER_API_VERSION", "").strip()
    try:
        version = client.api_version()
    except (EngineUnreachable, EngineTimeout, APIError, UnsupportedEngine) as exc:
        reason = _docker_wording(exc) if isinstance(exc, APIError) else str(exc)
        return MAX_API_VERSION, (
            f"# API {MAX_API_VERSION}: the highest buildsdk supports, as no engine answered "
            f"({reason}); an engine that answers may negotiate a lower one (pin it with "
            "--api-version)"
        )
    if pinned:
        return version, f"# API {version}: pinned by DOCKER_API_VERSION"
    return version, f"# API {version}: negotiated with the engine (its /_ping)"


def _dry_run(args: argparse.Namespace, options: BuildOptions) -> int:
    if choose_endpoint(options) == "grpc":
        return _dry_run_control(args, options)
    client = _client(args)
    out = sys.stdout
    control = False
    try:
        with client:
            version, origin = _dry_run_version(args, client)
            # Without an engine's answer the command line's builder stays (classic by default).
            with contextlib.suppress(EngineUnreachable, EngineTimeout, APIError, UnsupportedEngine):
                options = _follow_the_engine(args, options, client)
                if endpoint_for(client, options) == "grpc":
                    # A BuildKit build on Docker 23+: what the build would send is a Solve.
                    control = True
            if control:
                return _dry_run_control(args, options)
            plan = describe(client, options, version)
            request = plan.request
            if args.dry_run_format == "json":
                payload = _build_plan_json(plan, client.endpoint.host, origin)
                out.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
                return EXIT_OK
            out.write(f"{request.method} {request.path}?{query_string(request.params)}\n")
            if origin:
                out.write(origin + "\n")
            out.write(f"# engine: {client.endpoint.host}\n")
            out.write("query:\n")
            for key, value in request.params:
                out.write(f"  {key}={value}\n")
            out.write("headers:\n")
            for name, value in request.headers.items():
                out.write(f"  {name}: {_mask_header(name, value)}\n")
            out.write(_context_summary(options, plan.context) + "\n")
            note = _session_summary(plan.session)
            if note:
                out.write(note + "\n")
    except (UnsupportedOption, ValidationError) as exc:
        raise _usage_from(exc) from None
    except ContextError as exc:
        print(f"buildsdk: unable to prepare context: {exc}", file=sys.stderr)
        return EXIT_BUILD_FAILED
    return EXIT_OK


def _build_plan_json(plan: BuildPlan, engine: str, origin: str) -> dict[str, Any]:
    """A `POST /build` plan as `--dry-run --format json` prints it: the text form's facts."""
    request = plan.request
    session = plan.session
    return {
        "endpoint": "build",
        "engine": engine,
        "api_version": str(plan.api_version),
        "api_version_note": origin.removeprefix("# ") or None,
        "method": request.method,
        "path": request.path,
        "query": [[key, value] for key, value in request.params],
        "headers": {name: _mask_header(name, value) for name, value in request.headers.items()},
        "context": _context_summary(plan.options, plan.context).removeprefix("context: "),
        "session": None
        if session is None
        else {"serves": session.served(), "optional": session.optional},
    }


def _image_store(client: Client) -> ImageStore:
    """The engine's image store, asked as buildx asks it: `Control/ListWorkers`."""
    with ControlChannel(
        client.endpoint, headers=common_headers(client.docker_config.http_headers)
    ) as channel:
        reply = channel.unary(
            CONTROL_LIST_WORKERS, ListWorkersRequest().encode(), timeout=_CONTROL_TIMEOUT
        )
    return image_store(ListWorkersResponse.decode(reply))


def _dry_run_control(args: argparse.Namespace, options: BuildOptions) -> int:
    """Print the Control API build of `options`: the SolveRequest and its session, with the
    random ids a build would send; only `/_ping` and `ListWorkers` are asked."""
    client = _client(args)
    out = sys.stdout
    try:
        with client:
            client.api_version()
            store = _image_store(client)
            if options.cache_from:
                from buildsdk.session.content import cache_digests

                # The digest of a local cache import is what the build would send.
                options = cache_digests(options)
            if options.build_contexts:
                from buildsdk.session.content import oci_layout_digests

                # So is the digest an oci-layout context's tag names in its index.json.
                options = oci_layout_digests(options)
            plan = describe_control_build(options, engine=store)
    except (UnsupportedOption, ValidationError) as exc:
        raise _usage_from(exc) from None
    except GrpcCallError as exc:
        print(f"buildsdk: {exc}", file=sys.stderr)
        return EXIT_BUILD_FAILED
    except ContextError as exc:
        print(f"buildsdk: {exc}", file=sys.stderr)
        return EXIT_BUILD_FAILED
    payload = plan.to_json()
    if args.dry_run_format == "json":
        out.write(json.dumps(payload, ensure_ascii=False) + "\n")
        return EXIT_OK
    out.write(f"POST /grpc {CONTROL_SOLVE} (and {CONTROL_STATUS} with Ref {plan.ref})\n")
    out.write(f"# engine: {client.endpoint.host}; image store: {store} (from ListWorkers)\n")
    out.write("solve: " + json.dumps(payload["solve"], indent=2, ensure_ascii=False) + "\n")
    out.write(f"session: {plan.session_id}, shared key {plan.shared_key}, announcing:\n")
    for method in plan.session_methods:
        out.write(f"  {method}\n")
    read_only = read_only_stores(options)
    for store_id, directory in content_stores(options).items():
        mode = "read-only" if store_id in read_only else "read-write"
        out.write(f"content store {store_id}: {directory} ({mode})\n")
    return EXIT_OK


def _context_summary(options: BuildOptions, context: BuildContext | None) -> str:
    if context is None:
        return f"context: none sent; the engine fetches {options.remote_url}"
    sent = sum(len(chunk) for chunk in context)
    body = f"{sent} bytes of {'gzip-compressed ' if options.gzip else ''}tar"
    if options.custom_context:
        return f"context: archive from stdin, {body}"
    if options.path is None or options.is_remote:
        return f"context: a Dockerfile only, {body}"
    entries = list_context(options.path, dockerfile=options.dockerfile)
    files = [e for e in entries if e.type == "file"]
    size = sum(e.size for e in files)
    return f"context: {len(files)} files, {size} bytes ({len(entries)} entries; {body})"


def _session_summary(session: SessionNeeds | None) -> str:
    """What a BuildKit session would serve, since a dry run shows the request without one."""
    if session is None:
        return ""
    text = "session: a BuildKit session would serve " + ", ".join(session.served())
    if session.optional:
        text += "; on an engine without sessions the request above is sent as shown"
    return text


# -- context, prune, info -------------------------------------------------------------------


def _cmd_context(args: argparse.Namespace) -> int:
    root = Path(args.path)
    if not root.is_dir():
        raise _UsageError(f'unable to prepare context: path "{args.path}" not found')
    dockerfile = str((Path.cwd() / args.file).resolve()) if args.file else None
    try:
        entries = list_context(root, dockerfile=dockerfile)
        if args.why is not None:
            return _explain(root, args.why, args.json)
    except ContextError as exc:
        print(f"buildsdk: {exc}", file=sys.stderr)
        return EXIT_BUILD_FAILED
    files = [e for e in entries if e.type == "file"]
    total = sum(e.size for e in files)
    if args.json:
        payload = {
            "entries": [
                {
                    "name": e.name,
                    "type": e.type,
                    "size": e.size,
                    "mode": e.mode,
                    "linkname": e.linkname,
                }
                for e in entries
            ],
            "files": len(files),
            "bytes": total,
        }
        print(json.dumps(payload, indent=2, ensure_ascii=False))
        return EXIT_OK
    for e in entries:
        size = str(e.size) if e.type == "file" else "-"
        suffix = f" -> {e.linkname}" if e.linkname else ""
        if e.type == "dir" and not e.name.endswith("/"):
            suffix = "/"
        print(f"{size:>12}  {e.name}{suffix}")
    print(f"{len(files)} files, {total} bytes ({human_size(total)}) in {len(entries)} entries")
    return EXIT_OK


def _in_context(root: Path, target: str) -> str:
    """`target` as the context-relative name .dockerignore patterns are matched against.

    A relative path is relative to the context, cleaned like Go's `filepath.Clean`
    (`./src/a` and `src//a` are `src/a`); an absolute one must lie inside the context.
    A path outside the context, or not in it, is a usage error that says so.
    """
    if os.path.isabs(target):
        base = os.path.abspath(root)
        rel = os.path.relpath(os.path.normpath(target), base)
        if rel == ".." or rel.startswith("../"):
            # The context may be reached through a symlink; compare the real paths too.
            rel = os.path.relpath(os.path.realpath(target), os.path.realpath(base))
    else:
        rel = os.path.normpath(target)
    rel = rel.replace(os.sep, "/")
    if rel == ".." or rel.startswith("../"):
        raise _UsageError(f"--why {target}: outside the context {root}")
    if not os.path.lexists(root / rel):
        raise _UsageError(f"--why {target}: no such file or directory in the context {root}")
    return rel


def _explain(root: Path, target: str, as_json: bool) -> int:
    ignore = root / ".dockerignore"
    raw = ignore.read_bytes() if ignore.is_file() else b""
    matcher = PatternMatcher(read_dockerignore(raw))
    rel = _in_context(root, target)
    excluded = bool(matcher.matches_or_parent_matches(rel))
    line_text = matcher.which_pattern(rel)
    line_no = None
    if line_text is not None:
        for number, line in enumerate(raw.decode("utf-8", "replace").splitlines(), start=1):
            if line.strip() == line_text.strip() or line == line_text:
                line_no = number
    if as_json:
        print(
            json.dumps({"path": rel, "excluded": excluded, "line": line_no, "pattern": line_text})
        )
        return EXIT_OK
    if line_text is None:
        print(f"{rel}: included (no .dockerignore line matches it)")
    elif excluded:
        print(f"{rel}: excluded by .dockerignore line {line_no}: {line_text}")
    else:
        print(f"{rel}: included again by .dockerignore line {line_no}: {line_text}")
    return EXIT_OK


def _prune_filters(items: list[str]) -> dict[str, Any]:
    # `--filter` values as the CLI takes them: KEY=VALUE, each key once, flag-like booleans.
    filters: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if key in ("inuse", "shared", "private"):
            # Flag-like filters: `--filter inuse` or `--filter inuse=true`.
            if sep and value not in _TRUE | _FALSE:
                raise _UsageError(f"invalid filter {item!r}: {key} takes true or false")
            filters[key] = not sep or value in _TRUE
            continue
        if not sep:
            raise _UsageError(f"invalid filter {item!r}: expected KEY=VALUE")
        if key in filters:
            raise _UsageError(f"invalid filter {item!r}: {key} may be given only once")
        filters[key] = value
    return filters


def _cmd_prune(args: argparse.Namespace) -> int:
    filters = _prune_filters(args.filter)
    fields: dict[str, Any] = {"all": args.all}
    if filters:
        fields["filters"] = filters
    for name in ("keep_storage", "reserved_space", "max_used_space", "min_free_space"):
        value = getattr(args, name)
        if value is not None:
            fields[name] = value
    try:
        options = PruneOptions(**fields)
    except (ValidationError, ValueError) as exc:
        raise _usage_from(exc) from None
    client = _client(args)
    try:
        with client:
            if args.dry_run:
                _print_prune_plan(client, options, args.endpoint)
                return EXIT_OK
            result = client.prune_builds(options, endpoint=args.endpoint)
    except (UnsupportedOption, ValueError) as exc:
        raise _usage_from(exc) from None
    except EngineUnreachable:
        raise
    except BuildSDKError as exc:
        if _ping_failed(exc):
            raise
        print(f"buildsdk: {exc}", file=sys.stderr)
        return EXIT_BUILD_FAILED
    if result.caches_deleted:
        print("Deleted build cache objects:")
        for cache_id in result.caches_deleted:
            print(cache_id)
        print()
    print(f"Total reclaimed space: {human_size(result.space_reclaimed)}")
    return EXIT_OK


def _print_prune_plan(
    client: Client, options: PruneOptions, endpoint: Literal["auto", "build", "grpc"]
) -> None:
    # The endpoint first, then the request as it would be sent (nothing is removed).
    chosen = client.prune_endpoint(options, endpoint)
    print(f"# engine: {client.endpoint.host}")
    control = engine_prune_request(options) if chosen == "grpc" else None
    if control is not None:
        print("# endpoint: grpc (Control/Prune)")
        print(json.dumps(control.to_json(), sort_keys=True))
        return
    version = client.api_version()
    query = options.to_query(version)
    print("# endpoint: build (POST /build/prune)")
    tail = f"?{urllib.parse.urlencode(query)}" if query else ""
    print(f"POST /v{version}/build/prune{tail}")


def _buildx_filters(items: Sequence[str]) -> dict[str, str]:
    # buildx's `--filter` (docker's filters.ParseFlag): KEY=VALUE, the key lower-cased, both
    # trimmed; a key given twice with two values is refused, as buildx refuses it.
    filters: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise _UsageError(f"invalid filter {item!r}: expected KEY=VALUE")
        key, value = key.strip().lower(), value.strip()
        if filters.get(key, value) != value:
            raise _UsageError(f"invalid filter {item!r}: filters expect only one value")
        filters[key] = value
    try:
        buildkit_filters(filters)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    return filters


def _control_api_failed(exc: BuildSDKError) -> int:
    if _ping_failed(exc) or isinstance(exc, EngineUnreachable):
        raise exc
    print(f"buildsdk: {exc}", file=sys.stderr)
    return EXIT_BUILD_FAILED


def _cmd_du(args: argparse.Namespace) -> int:
    filters = _buildx_filters(args.filter)
    client = _client(args)
    try:
        with client:
            records = client.disk_usage(filters)
    except BuildSDKError as exc:
        return _control_api_failed(exc)
    sys.stdout.write(disk_usage_text(records, verbose=args.verbose, filtered=bool(filters)))
    return EXIT_OK


def _confirm(warning: str) -> bool:
    # The Docker CLI's prompt: the question on stdout, yes only for y or Y.
    sys.stdout.write(f"{warning} [y/N] ")
    sys.stdout.flush()
    return sys.stdin.readline().rstrip("\r\n") in ("y", "Y")


def _cmd_cache_prune(args: argparse.Namespace) -> int:
    filters = _buildx_filters(args.filter)
    fields: dict[str, Any] = {"all": args.all, "filters": filters}
    if args.keep_storage is not None:
        fields["keep_storage"] = args.keep_storage
    try:
        options = CachePruneOptions(**fields)
    except (ValidationError, ValueError) as exc:
        raise _usage_from(exc) from None
    if not args.force:
        which = "all" if args.all else "all dangling"
        if not _confirm(
            f"WARNING! This will remove {which} build cache. Are you sure you want to continue?"
        ):
            return EXIT_OK
    client = _client(args)
    try:
        with client:
            result = client.prune_cache(options)
    except BuildSDKError as exc:
        return _control_api_failed(exc)
    sys.stdout.write(prune_text(result.records, verbose=args.verbose))
    return EXIT_OK


def _cmd_info(args: argparse.Namespace) -> int:
    client = _client(args)
    try:
        with client:
            ping = client.ping()
            negotiated = client.api_version()
            version = client.version()
    except EngineUnreachable:
        raise
    except BuildSDKError as exc:
        if _ping_failed(exc):
            raise
        print(f"buildsdk: {exc}", file=sys.stderr)
        return EXIT_BUILD_FAILED
    names = [str(c.get("Name", "")) for c in version.components]
    podman = any(name.startswith("Podman") for name in names)
    os_type = ping.os_type or version.os
    if podman:
        # Podman builds with Buildah behind the Docker-compatible API and ignores `version`.
        builders = "classic API (Podman builds with Buildah; BuildKit is not offered)"
    else:
        offered = ["classic"]
        # The `version` build parameter, which asks for BuildKit, came with that API.
        if negotiated >= BUILD_PARAM_MIN_VERSION["version"] and os_type == "linux":
            offered.append("buildkit")
        preferred = {"1": "classic", "2": "buildkit"}.get(ping.builder_version or "")
        builders = ", ".join(offered) + (f" (the engine prefers {preferred})" if preferred else "")
    rows = [
        ("Endpoint", client.endpoint.host),
        ("Engine", f"{version.version} ({version.os}/{version.arch})"),
        ("Engine API", f"{version.min_api_version or '?'} to {version.api_version}"),
        ("API version", f"{negotiated} (buildsdk speaks up to {MAX_API_VERSION})"),
        ("Builders", builders),
        ("Experimental", "yes" if ping.experimental else "no"),
    ]
    for component in version.components:
        name = component.get("Name")
        if isinstance(name, str) and name not in ("Engine", "Podman Engine"):
            first_line = str(component.get("Version", "")).splitlines()[:1]
            rows.append((f"  {name}", first_line[0] if first_line else ""))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label + ':':<{width + 1}} {value}")
    return EXIT_OK
