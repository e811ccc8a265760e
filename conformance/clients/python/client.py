#!/usr/bin/env python3
"""Conformance client for Python: urllib.request or requests, configured as the user docs say.

Proxies come from HTTP_PROXY / HTTPS_PROXY (both libraries read them), or, for urllib, from a
proxies dictionary given with --proxies-dict (the docs' snippet, in its Python 3 form).

Usage: client.py --library urllib|requests [--proxies-dict URL] (METHOD URL BODY)...
Prints one JSON object per request on stdout.
"""

import json
import sys
import urllib.error
import urllib.request

TIMEOUT = 10
USAGE = (
    "usage: conformance-client --library urllib|requests [--proxies-dict URL] (METHOD URL BODY)...\n"
    "       BODY is the literal POST body, or '-' for none"
)


def one_line(text):
    return " ".join(str(text).split())


def error_text(exc):
    return one_line(f"{type(exc).__name__}: {exc}")


def decode(data):
    return data.decode("utf-8", errors="replace")


def via_urllib(opener):
    def send(method, url, body):
        data = None if body == "-" else body.encode("utf-8")
        headers = {} if data is None else {"Content-Type": "text/plain"}
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with opener(req) as resp:
                return resp.status, decode(resp.read())
        except urllib.error.HTTPError as exc:
            # A 4xx/5xx answer is still an answer.
            with exc:
                return exc.code, decode(exc.read())

    return send


def via_requests():
    import requests

    def send(method, url, body):
        data = None if body == "-" else body.encode("utf-8")
        headers = {} if data is None else {"Content-Type": "text/plain"}
        resp = requests.request(method, url, data=data, timeout=TIMEOUT, headers=headers)
        return resp.status_code, decode(resp.content)

    return send


def usage(problem=None):
    if problem:
        print(f"conformance-client: {problem}", file=sys.stderr)
    print(USAGE, file=sys.stderr)
    sys.exit(2)


def parse(argv):
    library, proxies_dict = None, None
    i = 0
    while i < len(argv) and argv[i].startswith("--"):
        flag = argv[i]
        if flag in ("--library", "--proxies-dict") and i + 1 < len(argv):
            if flag == "--library":
                library = argv[i + 1]
            else:
                proxies_dict = argv[i + 1]
            i += 2
        else:
            usage(f"unknown option {flag!r}")
    rest = argv[i:]
    if library not in ("urllib", "requests"):
        usage("--library urllib|requests is required")
    if proxies_dict is not None and library != "urllib":
        usage("--proxies-dict applies to urllib only")
    if not rest or len(rest) % 3 != 0:
        usage()
    requests_ = [tuple(rest[j:j + 3]) for j in range(0, len(rest), 3)]
    for method, _, _ in requests_:
        if method not in ("GET", "POST"):
            usage(f"METHOD must be GET or POST, got {method!r}")
    return library, proxies_dict, requests_


def main(argv):
    library, proxies_dict, todo = parse(argv)
    if library == "requests":
        send = via_requests()
    elif proxies_dict is None:
        # Plain urlopen: the environment's proxies apply automatically.
        send = via_urllib(lambda req: urllib.request.urlopen(req, timeout=TIMEOUT))
    else:
        # The docs show urlopen(url, proxies={...}) (Python 2); Python 3 spells it with a ProxyHandler.
        handler = urllib.request.ProxyHandler({"http": proxies_dict, "https": proxies_dict})
        opener = urllib.request.build_opener(handler)
        send = via_urllib(lambda req: opener.open(req, timeout=TIMEOUT))

    for method, url, body in todo:
        record = {"method": method, "url": url}
        try:
            status, text = send(method, url, body)
            record["status"] = status
            record["body"] = text
        except Exception as exc:  # every failure is a result, never a crash
            record["error"] = error_text(exc)
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        sys.stdout.buffer.write(line.encode("utf-8"))
        sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
