"""The add-on's files: addon.xml, strings.po, settings.xml, the icon, the module boundaries,
and the zip scripts/build-addon makes."""
import ast
import re
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
import zlib

import pytest

from addon_fakes import ADDON_DIR, LIB_DIR, ROOT, STRINGS_PO, parse_po
from kodi_tickets import config
from kodi_tickets import strings as S

PACKAGE = LIB_DIR / "kodi_tickets"
ADDON_XML = ADDON_DIR / "addon.xml"
SETTINGS_XML = ADDON_DIR / "resources" / "settings.xml"
ICON = ADDON_DIR / "resources" / "icon.png"


def addon_xml():
    return ET.parse(ADDON_XML).getroot()


def python_files():
    return sorted(ADDON_DIR.rglob("*.py"))


# -- strings.po -----------------------------------------------------------------------------


def string_constants():
    return {
        name: value
        for name, value in vars(S).items()
        if name.isupper() and not name.startswith("_") and isinstance(value, int)
    }


def test_strings_po_has_every_string_id_the_code_defines():
    po = parse_po()
    missing = {name: i for name, i in string_constants().items() if i not in po}
    assert not missing
    assert all(po[i].strip() for i in string_constants().values())


def test_every_string_in_strings_po_is_used():
    assert set(parse_po()) == set(string_constants().values())


def test_string_ids_are_in_the_range_for_scripts_and_services():
    assert all(32000 <= i <= 32999 for i in parse_po())
    assert len(set(string_constants().values())) == len(string_constants())


def test_the_code_uses_only_defined_string_names():
    """Every S.NAME in the add-on's modules exists in strings.py (and so in strings.po)."""
    used = set()
    for path in PACKAGE.glob("*.py"):
        used |= set(re.findall(r"\bS\.([A-Z_]+)\b", path.read_text(encoding="utf-8")))
    assert used, "no strings used?"
    assert used <= set(string_constants()) | {"REASON_MESSAGES"}


def test_the_code_passes_no_literal_text_to_the_screen():
    """Dialog and notification texts come only from env.text / strings.po: no string literal
    is an argument of a ui call."""
    offenders = []
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in {"ok", "notify", "notification", "pin_pad", "progress", "numeric", "create"}
            ):
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value:
                        offenders.append("%s:%d %r" % (path.name, node.lineno, arg.value))
    assert offenders == []


def test_strings_po_is_a_valid_kodi_po_file():
    text = STRINGS_PO.read_text(encoding="utf-8")
    assert not text.startswith("\ufeff") and "\r\n" not in text
    assert re.search(r'msgid ""\s+msgstr ""', text[: text.index('msgctxt "#')])
    assert 'Language: en_GB' in text
    assert "{0}" in parse_po()[S.MINUTES_LEFT]


# -- addon.xml ------------------------------------------------------------------------------


def test_addon_xml_identity():
    root = addon_xml()
    assert root.tag == "addon"
    assert root.get("id") == "service.kodi-tickets" == ADDON_DIR.name
    assert re.fullmatch(r"\d+\.\d+\.\d+", root.get("version"))
    assert root.get("name") and root.get("provider-name")


def test_addon_xml_requires_python_3_0_1_for_kodi_20():
    imports = {i.get("addon"): i.get("version") for i in addon_xml().findall("requires/import")}
    assert imports == {"xbmc.python": "3.0.1"}


def test_addon_xml_provides_the_script_first_and_the_service():
    extensions = addon_xml().findall("extension")
    points = [e.get("point") for e in extensions]
    # The first extension is Kodi's main type: RunScript(service.kodi-tickets) runs its library.
    assert points[0] == "xbmc.python.script"
    script = extensions[0]
    assert script.get("library") == "default.py" and (ADDON_DIR / "default.py").is_file()
    assert script.findtext("provides") == "executable"
    service = [e for e in extensions if e.get("point") == "xbmc.service"]
    assert len(service) == 1
    assert service[0].get("library") == "service.py" and (ADDON_DIR / "service.py").is_file()
    # Kodi 20 starts services at login whatever `start` says; kodi-addon-checker rejects it.
    assert service[0].get("start") in (None, "login")


def test_addon_xml_metadata():
    metadata = [e for e in addon_xml().findall("extension") if e.get("point") == "xbmc.addon.metadata"]
    assert len(metadata) == 1
    meta = metadata[0]
    assert meta.find("summary").get("lang") == "en_GB" and meta.findtext("summary").strip()
    assert meta.find("description").get("lang") == "en_GB" and len(meta.findtext("description")) <= 2500
    assert meta.findtext("platform") == "all"
    assert meta.findtext("license") == "MIT"
    news = meta.findtext("news")
    assert news and len(news) <= 1500 and addon_xml().get("version") in news
    icon = meta.findtext("assets/icon")
    assert icon == "resources/icon.png" and (ADDON_DIR / icon).is_file()


def test_changelog_and_license():
    version = addon_xml().get("version")
    assert (ADDON_DIR / "changelog.txt").read_text(encoding="utf-8").startswith("v" + version)
    assert "MIT License" in (ADDON_DIR / "LICENSE.txt").read_text(encoding="utf-8")


# -- settings.xml ---------------------------------------------------------------------------


def test_settings_xml_is_kodi_20_format_with_the_settings_the_code_reads():
    root = ET.parse(SETTINGS_XML).getroot()
    assert root.tag == "settings" and root.get("version") == "1"
    assert root.find("section").get("id") == "service.kodi-tickets"
    settings = {s.get("id"): s for s in root.iter("setting")}
    defaults = config.Settings()
    assert {k: (s.get("type"), s.findtext("default")) for k, s in settings.items()} == {
        "pinpad_on_login": ("boolean", str(defaults.pinpad_on_login).lower()),
        "pinpad_profile": ("string", defaults.pinpad_profile),
        "time_left_on_start": ("boolean", str(defaults.time_left_on_start).lower()),
        "relay_warnings": ("boolean", str(defaults.relay_warnings).lower()),
    }
    assert defaults.pinpad_profile == "Tickets"


def test_settings_xml_labels_are_in_strings_po():
    po = parse_po()
    root = ET.parse(SETTINGS_XML).getroot()
    ids = []
    for element in root.iter():
        for attribute in ("label", "help"):
            if element.get(attribute):
                ids.append(int(element.get(attribute)))
        if element.tag == "heading":
            ids.append(int(element.text))
    assert ids and all(i in po for i in ids)


def test_settings_read_falls_back_to_defaults():
    def broken(setting_id):
        raise RuntimeError("no such setting")

    settings = config.Settings.read(broken, broken)
    assert settings.pinpad_on_login is True and settings.pinpad_profile == "Tickets"
    assert config.Settings.read(lambda s: False, lambda s: "Lobby").pinpad_profile == "Lobby"


@pytest.mark.parametrize(
    "profile, setting, expected",
    [("Tickets", "Tickets", True), ("tickets ", "TICKETS", True), ("Kids", "Tickets", False), ("", "", False),
     ("Tickets", "", False), (None, "Tickets", False)],
)
def test_pinpad_profile_match(profile, setting, expected):
    assert config.Settings(pinpad_profile=setting).is_pinpad_profile(profile) is expected


# -- icon -----------------------------------------------------------------------------------


def read_png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, kind
        chunks.append((kind, body))
        pos += 12 + length
    return chunks


def test_the_icon_is_a_real_256x256_opaque_png():
    chunks = read_png(ICON)
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (width, height, depth, colour, interlace) == (256, 256, 8, 2, 0)  # RGB: no transparency
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    assert len(raw) == height * (1 + width * 3)
    rows = [raw[i * (1 + width * 3) + 1 : (i + 1) * (1 + width * 3)] for i in range(height)]
    assert {raw[i * (1 + width * 3)] for i in range(height)} == {0}
    pixels = {bytes(row[x : x + 3]) for row in rows[::8] for x in range(0, width * 3, 24)}
    assert len(pixels) > 5, "the icon is (nearly) one colour"


# -- code layout ----------------------------------------------------------------------------


def imported_modules(path):
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_adapter_imports_kodi_modules():
    kodi_modules = {"xbmc", "xbmcgui", "xbmcaddon", "xbmcvfs", "xbmcplugin", "xbmcdrm"}
    users = {p.name for p in PACKAGE.glob("*.py") if imported_modules(p) & kodi_modules}
    assert users == {"kodi.py"}


def test_the_code_avoids_apis_kodi_20_dropped_or_breaks():
    """No xbmc.translatePath (gone in Kodi 19+), no strptime (unreliable in Kodi's embedded
    Python), no waitForAbort with a constant <= 0 (waits forever)."""
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute):
                assert node.attr != "strptime", path
                if node.attr == "translatePath":
                    assert not (isinstance(node.value, ast.Name) and node.value.id == "xbmc"), path
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "waitForAbort":
                for arg in node.args:
                    assert not (isinstance(arg, ast.Constant) and arg.value <= 0), path


def test_every_python_file_compiles():
    for path in python_files():
        compile(path.read_text(encoding="utf-8"), str(path), "exec")


def test_entry_points_stay_tiny():
    for name in ("service.py", "default.py"):
        lines = [
            line
            for line in (ADDON_DIR / name).read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith(("#", '"""'))
        ]
        assert len(lines) < 8, name


# -- the zip --------------------------------------------------------------------------------


def build(out, source=None):
    command = [sys.executable, str(ROOT / "scripts" / "build-addon"), "--out", str(out)]
    if source is not None:
        command += ["--source", str(source)]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def test_build_addon_makes_an_installable_zip(tmp_path):
    # A copy with a Python cache and a dot-file in it: they must not ship.
    source = tmp_path / "src" / "service.kodi-tickets"
    shutil.copytree(ADDON_DIR, source, ignore=shutil.ignore_patterns("__pycache__"))
    (source / "resources" / "lib" / "kodi_tickets" / "__pycache__").mkdir()
    (source / "resources" / "lib" / "kodi_tickets" / "__pycache__" / "kodi.cpython-311.pyc").write_bytes(b"")
    (source / ".DS_Store").write_bytes(b"")
    path = build(tmp_path, source)
    version = addon_xml().get("version")
    assert path == str(tmp_path / ("service.kodi-tickets-%s.zip" % version))
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        assert all(n.startswith("service.kodi-tickets/") for n in names)
        for required in (
            "addon.xml", "default.py", "service.py", "changelog.txt", "LICENSE.txt",
            "resources/icon.png", "resources/settings.xml",
            "resources/language/resource.language.en_gb/strings.po",
            "resources/lib/kodi_tickets/kodi.py",
        ):
            assert "service.kodi-tickets/" + required in names, required
        assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo")) or "/." in n]
        assert archive.read("service.kodi-tickets/addon.xml") == ADDON_XML.read_bytes()


def test_build_addon_is_reproducible(tmp_path):
    first = build(tmp_path / "a")
    second = build(tmp_path / "b")
    assert open(first, "rb").read() == open(second, "rb").read()
