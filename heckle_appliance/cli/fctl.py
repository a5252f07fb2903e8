"""fctl: the operator's command line for the appliance's admin API.

``fctl [-S URL] -i IMAGE [-t MINUTES] HOST...`` is the original's form:
allocate the hosts, then watch them until each is Ready or Failed. The
subcommands do one thing each. Exit status: 0 all went well (every watched
node Ready), 1 a node Failed or the watch timed out, 2 usage, connection or
server errors (watching when nothing is allocated, too), 141 (128 + SIGPIPE,
as a shell tool killed by it) when the reader of the output went away, as
``head -1`` does.
"""

import argparse
import json
import os
import signal
import sys
import time

from . import watch as watching
from .client import DEFAULT_SERVER, Client, FctlError, authorization, first_credential

COMMANDS = ("allocate", "status", "watch", "images", "release", "dump")


def positive(text):
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def connection_options():
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("-S", "--server", metavar="URL",
                         help="the appliance (default: $FCTL_SERVER, $HECKLE_SERVER "
                              f"or {DEFAULT_SERVER})")
    who = options.add_mutually_exclusive_group()
    who.add_argument("--user", metavar="NAME:SECRET", help="basic credentials ($FCTL_USER)")
    who.add_argument("--token", help="bearer token ($FCTL_TOKEN)")
    who.add_argument("--credentials-file", metavar="FILE",
                     help="use the first name:secret line of FILE")
    return options


def json_option():
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--json", action="store_true", help="print JSON instead of text")
    return options


def watch_options():
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("-t", "--timeout", type=positive, default=45.0, metavar="MINUTES",
                         help="give up after MINUTES (default 45)")
    options.add_argument("--interval", type=positive, default=2.0, metavar="SECONDS",
                         help="poll every SECONDS (default 2)")
    options.add_argument("--inactivity", type=positive, default=300.0, metavar="SECONDS",
                         help="a node silent this long has Failed (default 300). This "
                              "can only shorten the limit: the server's "
                              "--inactivity-timeout (default 300) fails a silent node "
                              "anyway")
    return options


def allocation_options():
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("-i", "--image", required=True, help="image to allocate")
    options.add_argument("--extra", metavar="JSON", type=json_object,
                         help="JSON object passed to the templates as Extra")
    options.add_argument("hosts", nargs="+", metavar="HOST")
    return options


def json_object(text):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def hosts(nargs):
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("hosts", nargs=nargs, metavar="HOST")
    return options


def parsers():
    """One parser per command; None is the original's allocate-and-watch form."""
    connection, as_json, polling, nodes = (connection_options(), json_option(),
                                           watch_options(), hosts("*"))
    made = {None: argparse.ArgumentParser(
        prog="fctl", parents=[connection, polling, as_json, allocation_options()],
        description="Allocate HOSTs to IMAGE, then watch them until Ready or Failed.",
        epilog="other commands: " + ", ".join(COMMANDS) + " (fctl COMMAND --help)")}
    shapes = {
        "allocate": ([allocation_options()], "allocate HOSTs to IMAGE"),
        "status": ([as_json, nodes], "state of HOSTs (default: every node)"),
        "watch": ([polling, as_json, nodes], "watch HOSTs (default: every node) "
                                               "until Ready or Failed"),
        "images": ([as_json], "images and whether each can be allocated"),
        "release": ([hosts("+")], "release HOSTs: their next netboot boots the local disk"),
        "dump": ([as_json], "every node record"),
    }
    for name, (parents, description) in shapes.items():
        made[name] = argparse.ArgumentParser(prog=f"fctl {name}", description=description,
                                              parents=[connection, *parents])
    return made


def split_command(argv, original):
    """(command or None, the other arguments): the command is the first word
    that is not an option or an option's value, so ``fctl -S URL status`` works."""
    takes_value = {flag for action in original._actions if action.nargs != 0
                   for flag in action.option_strings}
    index = 0
    while index < len(argv) and argv[index].startswith("-") and argv[index] != "--":
        index += 2 if argv[index] in takes_value else 1
    if index < len(argv) and argv[index] in COMMANDS:
        return argv[index], argv[:index] + argv[index + 1:]
    if index < len(argv) and not {"-i", "--image"} & set(argv):
        original.error(f"unknown command {argv[index]!r}: use one of {', '.join(COMMANDS)}, "
                       f"or the original form fctl -i IMAGE HOST...")
    return None, argv


def connect(args):
    server = (args.server or os.environ.get("FCTL_SERVER") or os.environ.get("HECKLE_SERVER")
              or DEFAULT_SERVER)
    if args.credentials_file:
        header = authorization(user=first_credential(args.credentials_file))
    else:
        header = authorization(user=args.user or os.environ.get("FCTL_USER"),
                               token=args.token or os.environ.get("FCTL_TOKEN"))
    return Client(server, header)


def print_json(value):
    print(json.dumps(value, indent=2, sort_keys=True))


def print_table(header, rows):
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def show(args, reply, header, rows):
    """--json: the server's answer as it is; else a table."""
    if args.json:
        print_json(reply)
    else:
        print_table(header, rows)
    return 0


def when(epoch):
    return watching.wall_date(epoch) if epoch else "-"


def allocate(client, args, out=None):
    reply = client.post("/ctl", {"Addresses": args.hosts, "Image": args.image,
                                 "Extra": args.extra, "Time": int(time.time())})
    for given, key in reply["Allocated"].items():
        print(f"{given}: allocated to {reply['Image']}" + (f" as {key}" if key != given else ""),
              file=out or sys.stdout)
    return 0


def status(client, args):
    body = {"Time": 0, **({"Addresses": args.hosts} if args.hosts else {})}
    reply = client.post("/status", body)
    return show(args, reply, ("NODE", "IMAGE", "STATE", "MSGS", "LAST ACTIVITY",
                              "LATEST MESSAGE"), [
        (name, entry.get("Image") or "-", entry["State"], len(entry["Info"]),
         when(entry["LastActivity"]), entry["Info"][-1]["Message"] if entry["Info"] else "")
        for name, entry in reply.items()])


def images(client, args):
    reply = client.get("/api/images")
    return show(args, reply, ("IMAGE", "VALID"), [
        (name, "yes" if entry["Valid"] else f"no: {entry['Problem']}")
        for name, entry in sorted(reply.items())])


def release(client, args):
    reply = client.post("/release", {"Addresses": args.hosts})
    for given, key in reply["Released"].items():
        if key is None:
            print(f"{given}: was not allocated")
        else:
            print(f"{given}: released" + (f" ({key})" if key != given else ""))
    return 0


def dump(client, args):
    reply = client.get("/dump")
    return show(args, reply, ("KEY", "IMAGE", "IP", "MAC", "ALLOCATED", "BOOTS", "ERRORS",
                              "MSGS"), [
        (key, record["Image"], record.get("IP") or "-", record.get("MAC") or "-",
         when(record["Allocated"]), record["Counts"].get("bootconfig", 0), record["Errors"],
         len(record["Info"])) for key, record in sorted(reply.items())])


def progress_stream(args):
    """With --json the progress goes to stderr, leaving stdout to the JSON."""
    return sys.stderr if args.json else sys.stdout


def watch(client, args):
    out = progress_stream(args)
    display = (watching.LiveDisplay if out.isatty() else watching.LogDisplay)(out)
    result, elapsed = watching.run(client, args.hosts, display, args.interval,
                                   args.inactivity, args.timeout * 60)
    if not result.nodes:
        raise FctlError("nothing to watch: no node is allocated "
                        "(fctl watch HOST... or fctl -i IMAGE HOST...)")
    print(result.summary(elapsed), file=out, flush=True)
    if args.json:
        print_json(result.as_json(elapsed))
    return 0 if result.succeeded() else 1


def allocate_and_watch(client, args):
    allocate(client, args, progress_stream(args))
    return watch(client, args)


RUN = {None: allocate_and_watch, "allocate": allocate, "status": status, "watch": watch,
       "images": images, "release": release, "dump": dump}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    made = parsers()
    command, rest = split_command(argv, made[None])
    args = made[command].parse_args(rest)
    try:
        try:
            status = RUN[command](connect(args), args)
            sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
            return status
        except FctlError as exc:
            print(f"fctl: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130
    except BrokenPipeError:
        return reader_went_away()


def reader_went_away():
    """Output to a closed pipe (``fctl status | head -1``): stop quietly. What
    is left in the buffers goes to /dev/null, or flushing it at exit would
    raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            os.dup2(devnull, stream.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
