"""Shared by the suites under tests/ (browser, docs, kodi).

Being the rootdir-side conftest of tests/ (no __init__.py here), pytest's default "prepend"
import mode puts this folder on sys.path, so every test module and conftest below can
`import kt_server`. That needs pytest's rootdir at or above tests/: run pytest from the
repository root (as scripts/test does), e.g. `python3 -m pytest tests/browser`.

Fixture:
  server  a Kodi Tickets server of the test's own (kt_server.Server): temporary database,
          a fake Kodi script, stopped and removed after the test. On a failing test its log
          goes into the report.
"""

import pytest

from kt_server import Server


@pytest.fixture
def server(request):
    with Server(prefix=f"kt-{request.path.parent.name}-", fake_kodi=True) as srv:
        yield srv


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, adds the server's log to the report."""
    report = yield
    srv = item.funcargs.get("server")
    if report.when == "call" and report.failed and isinstance(srv, Server):
        report.sections.append(("server log", srv.log()))
    return report
