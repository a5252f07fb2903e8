"""fctl's view of the appliance: its admin HTTP API and nothing else.

Only the standard library, so that fctl runs on any operator's machine; it
must not import the server's code either, since it talks to it over HTTP.
"""

import base64
import http.client
import json
import re
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_SERVER = "http://localhost:8080"


class FctlError(Exception):
    """Something the operator must fix (server, credentials, arguments):
    reported as one line, exit status 2."""


def server_url(text):
    """Accept ``host:port`` as well as a full URL, as the original's ``-S``."""
    text = text.strip().rstrip("/")
    url = text if "://" in text else f"http://{text}"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FctlError(f"invalid server URL {text!r}")
    return url


def first_credential(path):
    """The first ``name:secret`` line of a credentials file (the server's format)."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FctlError(f"cannot read credentials file {path}: {exc}") from None
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            if ":" not in line:
                break
            return line
    raise FctlError(f"{path} has no name:secret line")


def authorization(user=None, token=None):
    """The Authorization header for basic ``name:secret`` or a bearer token."""
    if user:
        if ":" not in user:
            raise FctlError("credentials must be given as NAME:SECRET")
        return "Basic " + base64.b64encode(user.encode("utf-8")).decode("ascii")
    if token:
        return f"Bearer {token}"
    return None


def first_line(body, limit=200):
    """What an error body says, in one line: the appliance's bodies are one
    line of text already; a proxy's HTML page gives its title (or its first
    line of text), so that it cannot flood the terminal."""
    if re.match(r"\s*<(!doctype|html)", body, re.IGNORECASE):
        title = re.search(r"<title[^>]*>(.*?)</title>", body, re.IGNORECASE | re.DOTALL)
        body = title.group(1) if title else re.sub(r"<[^>]*>", "\n", body)
    for line in body.splitlines():
        line = " ".join(line.split())
        if line:
            return line if len(line) <= limit else line[:limit - 3] + "..."
    return ""


class Client:
    def __init__(self, server, auth_header=None, timeout=30):
        self.server = server_url(server)
        self.auth_header = auth_header
        self.timeout = timeout

    def get(self, path):
        return self._call(urllib.request.Request(self.server + path))

    def post(self, path, body):
        return self._call(urllib.request.Request(
            self.server + path, data=json.dumps(body).encode("utf-8"),
            headers={"Content-Type": "application/json"}))

    def _call(self, request):
        if self.auth_header:
            request.add_header("Authorization", self.auth_header)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                return json.load(reply)
        except urllib.error.HTTPError as exc:
            text = first_line(exc.read().decode("utf-8", "replace")) or exc.reason
            raise FctlError(f"{text} (HTTP {exc.code})") from None
        except urllib.error.URLError as exc:
            raise FctlError(f"cannot reach {self.server}: {exc.reason}") from None
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise FctlError(f"bad answer from {self.server}: {exc}") from None
