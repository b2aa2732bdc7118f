"""API_DOCUMENTATION.md's examples work as written.

Every ```sh block of the document is run with bash, in document order, in one shell (so
`TOKEN` carries over), against a server of the test's own. The test changes exactly two
things in them, and checks that it changed nothing else:

* `http://localhost:5000` becomes the test server's URL;
* the `TOKEN=$(cargo run -q --release -p kodi-tickets-server -- device add "Living room")`
  line runs the same `device add "Living room"` through the built (debug) server binary,
  with the server's settings, instead of building a release, and then puts the examples'
  profile on that device, as the admin does on the profile's page.

Each curl's output must be JSON shaped like the documented response that follows it (the
```json block, or an inline `200 {...}`): the same keys, the same JSON type for each value,
and equal values except ids and times. The documented error statuses that are cheap to
trigger (401, 400, 404, 413, 429) are then checked with curl: the status, and a body that is
`{"error": "..."}`.

If this test fails, the document and the server disagree: the failure says exactly where.

Needs pytest, curl, bash, and cargo to build the server if it is not built. The `server`
fixture (a server of the test's own, with a temporary database) is tests/conftest.py's.
"""

import json
import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "API_DOCUMENTATION.md"
DOC_URL = "http://localhost:5000"
DOC_TOKEN_LINE = 'TOKEN=$(cargo run -q --release -p kodi-tickets-server -- device add "Living room")'
# Values that differ from run to run: ids and times. Every other field must equal the doc's.
VOLATILE = {"id", "profile_id", "used_at", "created_at", "expires_at", "remaining_seconds"}
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
BASH_TIMEOUT = 120
# Puts a profile on a device on this server's machine (argv: database, device, profile).
PUT_ON_BOX_PY = (
    "import sqlite3, sys; sys.path.insert(0, {tests!r}); from kt_server import PUT_ON_LOCAL_BOX; "
    "db = sqlite3.connect(sys.argv[1]); db.execute(PUT_ON_LOCAL_BOX[0], (sys.argv[2],)); "
    "db.execute(PUT_ON_LOCAL_BOX[1], (sys.argv[2], sys.argv[3])); db.commit()"
).format(tests=str(REPO / "tests"))


# ---------------------------------------------------------------------------------------------
# Reading the document


@dataclass
class Block:
    lang: str
    text: str
    line: int  # 1-based line of the opening fence
    end: int  # 0-based index of the line after the closing fence


def fenced_blocks(lines: list) -> list:
    blocks, i = [], 0
    while i < len(lines):
        m = re.match(r"^```(\S*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start = i
        i += 1
        body = []
        while i < len(lines) and not re.match(r"^```\s*$", lines[i]):
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"{DOC.name}:{start + 1}: the ``` fence is never closed"
        i += 1
        blocks.append(Block(m.group(1), "\n".join(body) + "\n", start + 1, i))
    return blocks


@dataclass
class Example:
    block: Block
    expected: object  # the documented JSON response, or None for a block without output
    expected_status: int
    expected_where: str  # where in the doc the expected response is


def json_type(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def examples(doc_text: str) -> list:
    """The ```sh blocks in order, each with the documented response that follows it."""
    lines = doc_text.splitlines()
    blocks = fenced_blocks(lines)
    sh = [b for b in blocks if b.lang == "sh"]
    assert sh, f"{DOC.name} has no ```sh blocks"
    out = []
    for n, b in enumerate(sh):
        region_end = sh[n + 1].line - 1 if n + 1 < len(sh) else len(lines)
        if "curl" not in b.text:
            out.append(Example(b, None, 0, ""))
            continue
        # The documented answer: the first ```json block before the next ```sh block ...
        following = [j for j in blocks if j.lang == "json" and b.end <= j.line - 1 < region_end]
        if following:
            j = following[0]
            label = next(
                (lines[k] for k in range(j.line - 2, b.end - 1, -1) if lines[k].strip()), ""
            )
            m = re.fullmatch(r"\s*`(\d{3})`:?\s*", label)
            assert m, (
                f"{DOC.name}:{j.line}: the ```json block after the example at line {b.line} "
                f"has no `NNN`: status label before it (found {label!r})"
            )
            try:
                expected = json.loads(j.text)
            except json.JSONDecodeError as e:
                raise AssertionError(f"{DOC.name}:{j.line}: the documented response is not JSON: {e}")
            out.append(Example(b, expected, int(m.group(1)), f"{DOC.name}:{j.line}"))
            continue
        # ... or else an inline `200 {...}` in the prose after it.
        prose = [
            (k, lines[k]) for k in range(b.end, region_end)
            if not any(x.line - 1 <= k < x.end for x in blocks)
        ]
        found = None
        for k, text in prose:
            for m in re.finditer(r"`(\d{3}) (\{[^`]*\})`", text):
                if m.group(1).startswith("2"):
                    found = (k, int(m.group(1)), m.group(2))
                    break
            if found:
                break
        assert found, (
            f"{DOC.name}:{b.line}: no documented response (```json block or inline "
            f"`200 {{...}}`) follows this example"
        )
        k, status, raw = found
        try:
            expected = json.loads(raw)
        except json.JSONDecodeError as e:
            raise AssertionError(f"{DOC.name}:{k + 1}: the documented response {raw} is not JSON: {e}")
        out.append(Example(b, expected, status, f"{DOC.name}:{k + 1}"))
    return out


def doc_pin(doc_text: str) -> str:
    """The one PIN the ```sh examples use."""
    sh = "".join(b.text for b in fenced_blocks(doc_text.splitlines()) if b.lang == "sh")
    pins = set(re.findall(r'"lock_code"\s*:\s*"(\d{4})"', sh)) | set(
        re.findall(r"/api/ticket/(\d{4})\b", sh)
    )
    assert len(pins) == 1, f"the ```sh examples should use one PIN, they use {sorted(pins)}"
    return pins.pop()


def inline_error(doc_text: str, status: int) -> str:
    """The documented `NNN {"error": "..."}` message for this status."""
    m = re.search(rf'{status} (\{{"error": "[^"]*"\}})', doc_text)
    assert m, f'{DOC.name} documents no `{status} {{"error": ...}}` body'
    return json.loads(m.group(1))["error"]


# ---------------------------------------------------------------------------------------------
# Comparing a response with the documented one


def compare(expected, actual, where: str) -> list:
    """Every way `actual` differs from the documented `expected` (keys, types, stable values)."""
    if not isinstance(expected, dict) or not isinstance(actual, dict):
        if json_type(expected) != json_type(actual):
            return [f"{where}: documented a JSON {json_type(expected)}, got a {json_type(actual)}: {actual!r}"]
        return []
    problems = []
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    if missing:
        problems.append(f"{where}: documented keys missing from the response: {missing}")
    if extra:
        problems.append(f"{where}: undocumented keys in the response: {extra}")
    for key in [k for k in expected if k in actual]:
        want, got = expected[key], actual[key]
        if json_type(want) != json_type(got):
            problems.append(
                f"{where}: \"{key}\" is documented as a {json_type(want)} ({want!r}) "
                f"but is a {json_type(got)} ({got!r})"
            )
        elif key not in VOLATILE and want != got:
            problems.append(f"{where}: \"{key}\" is documented as {want!r} but is {got!r}")
        elif key in VOLATILE and isinstance(got, int) and isinstance(want, int) and got < 0:
            problems.append(f"{where}: \"{key}\" is negative: {got}")
    return problems


def parse_time(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def time_problems(body: dict, where: str) -> list:
    """What the prose says about times: RFC 3339 UTC, expires_at = used_at + length minutes."""
    problems = []
    for key in ("used_at", "created_at", "expires_at"):
        v = body.get(key)
        if isinstance(v, str) and not RFC3339_UTC.match(v):
            problems.append(f"{where}: \"{key}\" = {v!r} is not an RFC 3339 UTC time")
    used, expires, length = body.get("used_at"), body.get("expires_at"), body.get("length")
    if (
        isinstance(used, str) and isinstance(expires, str) and isinstance(length, int)
        and RFC3339_UTC.match(used) and RFC3339_UTC.match(expires)
        and parse_time(expires) - parse_time(used) != timedelta(minutes=length)
    ):
        problems.append(f"{where}: expires_at {expires} is not used_at {used} + {length} minutes")
    remaining = body.get("remaining_seconds")
    if isinstance(remaining, int) and isinstance(length, int) and not 0 <= remaining <= length * 60:
        problems.append(f"{where}: remaining_seconds {remaining} is not within 0..{length * 60}")
    return problems


# ---------------------------------------------------------------------------------------------
# Running the examples


def substitute(text: str, url: str, token_line: str) -> str:
    return text.replace(DOC_URL, url).replace(DOC_TOKEN_LINE, token_line)


def test_documented_examples_work_as_written(server):
    doc_text = DOC.read_text()
    exs = examples(doc_text)
    sh_text = "".join(e.block.text for e in exs)

    # The two substitutions, and nothing else. The token line also puts the examples' profile
    # on the new device, as the admin does on the profile's page: a device's token uses only
    # its own profiles' tickets.
    login = next((e for e in exs if "/api/login" in e.block.text), None)
    assert login is not None, f"{DOC.name} has no /api/login example"
    profile = login.expected["profile"]
    put_on_box = (
        f"python3 -c {shlex.quote(PUT_ON_BOX_PY)} {shlex.quote(str(server.db_path))} "
        f"'Living room' {shlex.quote(profile)}"
    )
    token_line = f'TOKEN=$({shlex.quote(str(server.binary))} device add "Living room") && {put_on_box}'
    assert sh_text.count(DOC_TOKEN_LINE) == 1, (
        f"{DOC.name}: expected the line {DOC_TOKEN_LINE!r} exactly once in the ```sh blocks, "
        f"found it {sh_text.count(DOC_TOKEN_LINE)} times"
    )
    assert server.url not in doc_text and str(server.binary) not in doc_text
    executed = [substitute(e.block.text, server.url, token_line) for e in exs]
    for e, run in zip(exs, executed):
        # Undoing the two substitutions gives back the document's text exactly.
        undone = run.replace(token_line, DOC_TOKEN_LINE).replace(server.url, DOC_URL)
        assert undone == e.block.text, f"{DOC.name}:{e.block.line}: the test changed more than the URL and the token line"
        assert "localhost" not in run and "cargo" not in run, (
            f"{DOC.name}:{e.block.line}: after the substitutions the example still has a "
            f"localhost URL or a cargo command not covered by them:\n{run}"
        )
        if e.expected is not None:
            assert DOC_URL in e.block.text, f"{DOC.name}:{e.block.line}: the curl example does not call {DOC_URL}"

    # The PIN, profile and length the examples show must exist: a ticket like the doc's.
    pin = doc_pin(doc_text)
    server.seed_ticket(profile, pin, login.expected["length"])

    # All blocks in one bash, in order; each block's output to files of its own.
    with tempfile.TemporaryDirectory(prefix="kt-docs-run-") as out:
        out = Path(out)
        script = ["# API_DOCUMENTATION.md's ```sh blocks, in order (with the two substitutions)"]
        for n, run in enumerate(executed):
            script += [
                "{",
                run.rstrip("\n"),
                f'}} >"$KT_DOCS_OUT/{n}.out" 2>"$KT_DOCS_OUT/{n}.err"',
                f'echo $? >"$KT_DOCS_OUT/{n}.rc"',
            ]
        script.append('printf %s "${TOKEN-}" >"$KT_DOCS_OUT/token"')
        (out / "examples.sh").write_text("\n".join(script) + "\n")
        env = dict(server.env, KT_DOCS_OUT=str(out), NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", str(out / "examples.sh")],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=BASH_TIMEOUT,
        )
        assert done.returncode == 0, f"bash failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        results = [
            (
                (out / f"{n}.out").read_text(),
                (out / f"{n}.err").read_text(),
                int((out / f"{n}.rc").read_text()),
            )
            for n in range(len(exs))
        ]
        token = (out / "token").read_text()

    problems, bodies = [], {}
    for e, run, (stdout, stderr, rc) in zip(exs, executed, results):
        where = f"{DOC.name}:{e.block.line}"
        if rc != 0:
            problems.append(f"{where}: the example exited with {rc}:\n{run}stderr: {stderr}")
            continue
        if e.expected is None:
            if stdout.strip():
                problems.append(f"{where}: the example printed {stdout!r}, the doc shows no output")
            continue
        try:
            actual = json.loads(stdout)
        except json.JSONDecodeError:
            problems.append(f"{where}: the output is not JSON: {stdout!r} (stderr: {stderr!r})")
            continue
        if isinstance(actual, dict) and "error" in actual and "error" not in e.expected:
            problems.append(
                f"{where}: documented as {e.expected_status} ({e.expected_where}) "
                f"but the server answered an error: {actual}"
            )
            continue
        label = f"{where} (documented at {e.expected_where})"
        problems += compare(e.expected, actual, label)
        if isinstance(actual, dict):
            problems += time_problems(actual, label)
        bodies[e.block.line] = actual

    if not re.fullmatch(r"\S+", token):
        problems.append(f"the token line left TOKEN = {token!r}, not a token")

    # The ticket example shows the ticket the login example used.
    logged, shown = bodies.get(login.block.line), next(
        (bodies[e.block.line] for e in exs if "/api/ticket/" in e.block.text and e.block.line in bodies),
        None,
    )
    if isinstance(logged, dict) and isinstance(shown, dict):
        for key in ("used_at", "expires_at"):
            if logged.get(key) != shown.get(key):
                problems.append(
                    f"/api/ticket/{pin} shows {key} {shown.get(key)!r}, "
                    f"but /api/login answered {logged.get(key)!r}"
                )

    assert not problems, "API_DOCUMENTATION.md and the server disagree:\n- " + "\n- ".join(problems)


# ---------------------------------------------------------------------------------------------
# The documented errors


def curl(url: str, *args: str, body: bytes = None) -> tuple:
    """(status, headers, JSON body or the raw text) of one curl call."""
    with tempfile.TemporaryDirectory(prefix="kt-docs-curl-") as tmp:
        tmp = Path(tmp)
        cmd = ["curl", "-s", "-S", "-o", str(tmp / "body"), "-D", str(tmp / "headers"),
               "-w", "%{http_code}", "--noproxy", "*"]
        if body is not None:
            (tmp / "request").write_bytes(body)
            cmd += ["--data-binary", f"@{tmp / 'request'}"]
        done = subprocess.run([*cmd, *args, url], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"curl {args} {url} failed ({done.returncode}): {done.stderr}"
        raw = (tmp / "body").read_text()
        headers = {}
        for line in (tmp / "headers").read_text().splitlines()[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError:
        parsed = raw
    return int(done.stdout), headers, parsed


def error_problem(what: str, want_status: int, got: tuple, want_message: str = None):
    status, _, body = got
    if status != want_status:
        return f"{what}: documented {want_status}, got {status} {body!r}"
    if not (isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"], str) and body["error"]):
        return f'{what}: {status} body is not {{"error": "..."}}: {body!r}'
    if want_message is not None and body["error"] != want_message:
        return f"{what}: {status} error is {body['error']!r}, documented {want_message!r}"
    return None


def test_documented_errors(server):
    doc_text = DOC.read_text()
    pin = doc_pin(doc_text)
    unknown = "1111" if pin != "1111" else "2222"
    added = server.cli("device", "add", "Docs errors")
    assert added.returncode == 0, added.stderr
    server.seed_ticket("Kids", pin, 30, device="Docs errors")
    auth = ["-H", f"Authorization: Bearer {added.stdout.strip()}"]
    as_json = ["-H", "Content-Type: application/json"]
    login, ticket = server.url + "/api/login", server.url + "/api/ticket/"

    def post(body, *headers):
        return curl(login, "-X", "POST", *headers, body=body.encode() if isinstance(body, str) else body)

    problems = []

    def check(what, want_status, got, message=None):
        p = error_problem(what, want_status, got, message)
        if p:
            problems.append(p)

    # 401: a missing or wrong token, with the documented message.
    unauthorized = inline_error(doc_text, 401)
    good = json.dumps({"lock_code": pin})
    check("POST /api/login without a token", 401, post(good, *as_json), unauthorized)
    check("POST /api/login with a wrong token", 401,
          post(good, *as_json, "-H", "Authorization: Bearer not-a-token"), unauthorized)
    check(f"GET /api/ticket/{pin} without a token", 401, curl(ticket + pin), unauthorized)

    # 400: each kind of body the login table names, and a malformed PIN in the ticket URL.
    for body in ["not json", '["0420"]', "{}", '{"lock_code":1234}', '{"lock_code":"12a4"}',
                 '{"lock_code":"12345"}']:
        check(f"POST /api/login {body}", 400, post(body, *auth, *as_json))
    for code in ["12a4", "12345"]:
        check(f"GET /api/ticket/{code}", 400, curl(ticket + code, *auth))

    # 413: a body over 16 KiB (that would otherwise be a valid login for an unknown PIN).
    big = json.dumps({"lock_code": unknown, "padding": "x" * (16 * 1024)})
    assert len(big) > 16 * 1024
    check(f"POST /api/login with a {len(big)}-byte body", 413, post(big, *auth, *as_json))

    # 404: an unknown PIN, then a used one; and a PIN no ticket ever had.
    check(f"POST /api/login unknown PIN {unknown}", 404, post(json.dumps({"lock_code": unknown}), *auth, *as_json))
    first = post(good, *auth, *as_json)
    if first[0] != 200:
        problems.append(f"POST /api/login {pin} (seeded ticket): expected 200, got {first[0]} {first[2]!r}")
    check(f"POST /api/login already used PIN {pin}", 404, post(good, *auth, *as_json))
    check(f"GET /api/ticket/{unknown} (never had a ticket)", 404, curl(ticket + unknown, *auth))

    assert not problems, "API_DOCUMENTATION.md's error table and the server disagree:\n- " + "\n- ".join(problems)


def test_documented_guessing_limit(server):
    doc_text = DOC.read_text()
    m = re.search(r"after \*\*(\d+) misses within a minute\*\*", doc_text)
    assert m, f"{DOC.name} no longer says 'after **N misses within a minute**'"
    misses = int(m.group(1))
    template = inline_error(doc_text, 429)
    assert " N " in template, f"the documented 429 message {template!r} has no N"
    pin = doc_pin(doc_text)
    unknown = "1111" if pin != "1111" else "2222"
    added = server.cli("device", "add", "Docs guessing")
    assert added.returncode == 0, added.stderr
    server.seed_ticket("Kids", pin, 30, device="Docs guessing")
    auth = ["-H", f"Authorization: Bearer {added.stdout.strip()}", "-H", "Content-Type: application/json"]
    login = server.url + "/api/login"

    for n in range(misses):
        got = curl(login, "-X", "POST", *auth, body=json.dumps({"lock_code": unknown}).encode())
        p = error_problem(f"miss {n + 1} of {misses}", 404, got)
        assert p is None, p

    # The next call is refused even with the right PIN.
    status, headers, body = curl(login, "-X", "POST", *auth, body=json.dumps({"lock_code": pin}).encode())
    p = error_problem(f"POST /api/login {pin} after {misses} misses", 429, (status, headers, body))
    assert p is None, p
    retry = headers.get("retry-after")
    assert retry is not None and retry.isdigit() and 1 <= int(retry) <= 60, (
        f"429 without a documented Retry-After: N header (headers: {headers})"
    )
    minutes = -(-int(retry) // 60)
    said = " 1 minute" if minutes == 1 else f" {minutes} minutes"
    assert body["error"] == template.replace(" N minutes", said), (
        f"429 error is {body['error']!r}, documented {template!r} with N = {minutes} "
        f"(Retry-After {retry} s in minutes, rounded up)"
    )
