"""Config fuzzing (issue 12, bad input): random mutations of the demo config never give a traceback.

A mutation changes the demo config (plus a [strategy.params], [fair_value], [live] with guards and
venues, and backtest scenarios, so mutations reach every section) at a random key path, tables and
arrays of tables included: deletes the key, adds an unknown key (unicode names; names with dots,
quotes, line breaks, U+2028; the empty name), renames a key, or replaces a value with one of another
type or a nasty one of its own: 1e308, 10**30, ints past int64 and past Python's 4300-digit limit,
nan, inf, negatives, zero, unicode, 10,000-character and path-like strings, times out of range,
TOML dates and times, other names of the document, arrays nested 3000 deep. One to three mutations an
example; the document is written as TOML by the small writer below (round trip checked) and loaded
from a file as the CLI loads it.

The property: ``load_config`` returns a config, or raises ConfigError with one line per problem,
each ``<file>: <key>: <what>``, the key a TOML key path that names a place in the document near a
mutation (the key itself, a parent or child of it, or a key that refers to it), or a line and
column for TOML that does not load; no other exception. A config that loads holds no nan or inf
(but an uncapped exposure_cap), and must then pass, or fail the same way, what ``stockbridge config
check`` runs (:func:`stockbridge.commands.config.check`, the backtest's own checks) and the live
bot's venue plan (``execution.live.plan_venues``, a one-line refusal allowed).
:data:`FOUND` lists what broke the property before the fixes.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import re
import tomllib
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockbridge.config import load_config
from stockbridge.errors import ConfigError, StockbridgeError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def _trader_compiled() -> None:
    """Overrides tests/faults/conftest.py's warm-up of the trader core: nothing here compiles or
    trades, and that warm-up is a minute from a cold numba cache."""


# -- the base document: the demo, plus every section the config has, so mutations reach them --------


def base_doc() -> dict:
    doc = tomllib.loads((ROOT / "configs" / "demo.toml").read_text())
    doc["strategy"]["params"] = {"gamma": 0.05, "k": 10.0, "levels": 2, "size": 1.0}
    doc["risk"]["hedge_target"] = 0.0
    doc["fair_value"] = {"consensus_half_life_s": 60.0, "venue_noise_bps": 10.0}
    doc["venues"]["kraken"]["clock_offset_ms"] = 0.0
    doc["backtest"].update({
        "start": "2025-07-03T00:00:00Z", "end": "2025-07-08T00:00:00Z", "decide_when_changed": False,
        "scenarios": [{"kind": "halt", "venue": "kraken", "at": "2025-07-07T15:00:00Z", "until": "2025-07-07T16:00:00Z"},
                      {"kind": "default", "venue": "solana_dex", "at": "2025-07-07T18:00:00Z", "recovery_rate": 0.4}],
    })
    doc["live"] = {
        "sandbox": True, "journal": "journal.sqlite", "journal_sync": "full", "decision_interval_ms": 0.0,
        "call_timeout_ms": 10_000.0, "unknown_order_grace_ms": 3_000.0,
        "guards": {"stale_book_ms": 5_000.0, "order_burst": 10, "max_drawdown": 5_000.0},
        "venues": {"bybit": {"api_key_env": "BYBIT_API_KEY", "api_secret_env": "BYBIT_API_SECRET"},
                   "kraken": {"api_key_env": "KRAKEN_KEY", "api_secret_env": "KRAKEN_SECRET", "passphrase_env": "KRAKEN_PASS"}},
    }
    return doc


BASE = base_doc()


# -- a TOML writer: the whole document as top-level keys with inline tables ------------------------
# (no dependency for it; the round trip through tomllib is asserted for every example it writes)

_BARE = re.compile(r"[A-Za-z0-9_-]+")


class Raw(str):
    """TOML text written as it is, for values no Python value writes and tomllib cannot read: an
    integer of more than 4300 digits (``int()`` refuses it), arrays nested deeper than its stack."""


def _toml_str(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(k: str) -> str:
    return k if _BARE.fullmatch(k) else _toml_str(k)


def _toml_value(v) -> str:
    if isinstance(v, Raw):
        return str.__str__(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, (datetime, date, time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"no TOML for {type(v).__name__}")


def dumps(doc: dict) -> str:
    return "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in doc.items())


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _has_raw(v) -> bool:
    if isinstance(v, Raw):
        return True
    if isinstance(v, dict):
        return any(_has_raw(x) for x in v.values())
    if isinstance(v, list):
        return any(_has_raw(x) for x in v)
    return False


# -- mutations ----------------------------------------------------------------------------------------

def paths(node, prefix=()) -> list[tuple]:
    """Every key path below ``node``: table keys are str, array positions int."""
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        out.append((*prefix, k))
        out.extend(paths(v, (*prefix, k)))
    return out


# the table keys of the document and a few other names a string of it may be set to
DOC_NAMES = sorted({p[-1] for p in paths(BASE) if isinstance(p[-1], str)}
                   | {"fixed_spread", "avellaneda_stoikov", "cross_venue_arb", "XNYS", "LSE", "24/5", "equity", "probabilistic"})


def get(doc, path):
    for p in path:
        doc = doc[p]
    return doc


names = st.one_of(
    st.sampled_from(["extra", "maker_fee", "Kind", "tick-size", "0", "", " ", "a.b", 'qu"ote', "new\nline",
                     "tab\there", "crlf\r\n", "nel\x85", "ls\u2028ps\u2029", "émission", "费用", "🚀", "ｋｉｎｄ"]),
    st.text(min_size=1, max_size=12),
)

huge_ints = st.sampled_from([10**30, -(10**30), 2**63, 2**64, -(2**63) - 1, 10**4000, Raw("9" * 5000), Raw("-1_0" * 3000)])
too_deep = st.sampled_from([Raw("[" * 3000 + "]" * 3000), Raw("{a = " * 1000 + "1" + "}" * 1000), Raw("[" * 50 + "]" * 50)])
ints = st.one_of(st.integers(), st.sampled_from([0, -1, 1, 2**31, 2**63 - 1]), huge_ints)
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, -1.0, 1e308, -1e308, 1.7976931348623157e308, 5e-324, math.inf, -math.inf, math.nan, 1e-300]),
)
long_strings = st.sampled_from(["x" * 10_000, "é" * 5_000, "🚀" * 2_000, "a\n" * 500])
path_strings = st.sampled_from(["/etc/passwd", "../../../etc/passwd", "C:\\Windows\\system32", "~/x.sqlite", "/",
                                "..", ".", "a/b", "\\\\server\\share", "file:///tmp/x", "/dev/null", "nul", "con"])
times = st.sampled_from(["2025-07-07", "2025-07-07T13:30:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
                         "2300-01-01T00:00:00Z", "1677-09-21T00:00:00Z", "1900-01-01T00:00:00Z", "2025-13-01T00:00:00Z",
                         "2025-07-07T25:00:00Z", "now", "1751895000", "+002025-07-07T00:00:00Z", "2025-07-07T13:30:00+24:00"])
strings = st.one_of(st.text(max_size=30), st.just(""), long_strings, path_strings, times,
                    st.sampled_from(["true", "1e400", "nan", "NYSE\n", "glft ", "GLFT", "testnet ", "24/7\x00"]))
toml_times = st.one_of(
    st.datetimes(timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=14)), timezone(timedelta(hours=-14))])),
    st.datetimes(), st.dates(), st.times(),
)
scalars = st.one_of(st.booleans(), ints, floats, strings, toml_times, too_deep)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(names, inner, max_size=3)), max_leaves=6)


def nastier(old):
    """A replacement for ``old``: mostly a value of another type, or an extreme of its own type."""
    if isinstance(old, bool):
        return st.one_of(st.just(not old), st.sampled_from([0, 1, "true", "yes", "false", ""]), values)
    if isinstance(old, (int, float)):
        return st.one_of(floats, ints, st.sampled_from([str(old), "1e400", "", "inf"]), st.just(-old), values)
    if isinstance(old, str):  # another name of the document reaches the cross-references and the backtest's checks
        return st.one_of(strings, st.sampled_from([old.upper(), old + " ", " " + old, old * 1000, old + "\n"]),
                         st.sampled_from(DOC_NAMES), values)
    if isinstance(old, list):
        return st.one_of(st.just([]), st.just(old * 20), st.just(old[:1]), st.just({}), values)
    if isinstance(old, dict):
        return st.one_of(st.just({}), st.just([old]), values)
    return values


@st.composite
def mutated(draw):
    """(document, the mutations as (what, key path)): 1-3 mutations of :data:`BASE`."""
    doc = copy.deepcopy(BASE)
    done = []
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(["delete", "extra", "rename", "replace", "replace", "replace"]))
        if what == "extra":
            tables = [()] + [p for p in paths(doc) if isinstance(get(doc, p), dict)]
            where = draw(st.sampled_from(tables))
            key = draw(names)
            get(doc, where)[key] = draw(values)
            done.append((what, (*where, key)))
            continue
        every = paths(doc)
        if not every:
            break
        path = draw(st.sampled_from(every))
        parent, key = get(doc, path[:-1]), path[-1]
        if what == "delete":
            del parent[key]
        elif what == "rename" and isinstance(key, str):
            new = draw(names.filter(lambda n: n not in parent))
            parent[new] = parent.pop(key)
            done.append((what, (*path[:-1], new)))
        else:
            what = "replace"
            parent[key] = draw(nastier(parent[key]))
        done.append((what, path))
    return doc, done


# -- the property -------------------------------------------------------------------------------------

# keys whose value names another part of the document: an error here may come from a mutation there
CROSS_REFERENCES = [re.compile(p) for p in (
    r"instruments(\..+\.underlying)?", r"venues(\..+\.instruments\..+)?", r"strategy\.(quote_venues|instrument)",
    r"live\.venues\..+", r"backtest\.scenarios\.\d+\.venue")]


def key_parts(key: str) -> tuple:
    """The parts of an error's key, read as a TOML dotted key (so a quoted part may hold dots)."""
    try:
        node = tomllib.loads(f"{key} = 0")
    except tomllib.TOMLDecodeError:
        raise AssertionError(f"error key {key!r} is not a TOML key path") from None
    parts = []
    while isinstance(node, dict):
        (k, node), = node.items()
        parts.append(int(k) if re.fullmatch(r"[0-9]+", k) else k)
    return tuple(parts)


def _related(a: tuple, b: tuple) -> bool:
    """One key path is the other, or a parent of it."""
    a, b = tuple(map(str, a)), tuple(map(str, b))
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def check_error(err: StockbridgeError, path: Path, doc: dict, done: list, stage: str) -> None:
    text = str(err)
    lines = text.splitlines()
    assert lines, f"{stage}: empty error message"
    if not isinstance(err, ConfigError):  # the live plan's refusal: one line naming the file or an option
        assert len(lines) == 1, f"{stage}: {type(err).__name__} over {len(lines)} lines: {text!r}"
        return
    assert len(lines) == len(err.problems), f"{stage}: {len(err.problems)} problems over {len(lines)} lines: {text!r}"
    mutated_paths = [p for _, p in done]
    for (key, message), line in zip(err.problems, lines):
        assert line == f"{path}: {key}: {message}", f"{stage}: not '<file>: <key>: <what>': {line!r}"
        assert key and message, f"{stage}: no key in {line!r}"
        if _TOML_POSITION.fullmatch(key):  # only a Raw value makes TOML that does not load
            assert _has_raw(doc), f"{stage}: the test wrote TOML that does not parse: {line!r}"
            continue
        parts = key_parts(key)
        # the key, or for a missing key its table, is in the document: no pydantic-internal suffix
        assert isinstance(_node(doc, parts[:-1]), (dict, list)), f"{stage}: {key!r} is not a place in the document ({line!r})"
        near = any(_related(parts, m) for m in mutated_paths)
        cross = any(r.fullmatch(key) for r in CROSS_REFERENCES)
        assert near or cross, f"{stage}: {key!r} is not near any mutation {mutated_paths} ({line!r})"


_TOML_POSITION = re.compile(r"line \d+, column \d+( \(end of file\))?")


def _node(doc, parts):
    """The value at ``parts`` (None if there is none); a digit part is a table key or an array position."""
    node = doc
    for p in parts:
        if isinstance(node, dict) and str(p) in node:
            node = node[str(p)]
        elif isinstance(node, list) and isinstance(p, int) and p < len(node):
            node = node[p]
        else:
            return None
    return node


def _assert_finite(node, where: tuple) -> None:
    """No nan or inf in a loaded config, but for ``exposure_cap`` (inf: no cap)."""
    if isinstance(node, float):
        assert math.isfinite(node) or (where[-1] == "exposure_cap" and node == math.inf), f"{where}: {node}"
    elif isinstance(node, dict):
        for k, v in node.items():
            _assert_finite(v, (*where, k))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            _assert_finite(v, (*where, i))


def first_refusal(path: Path) -> tuple[str, StockbridgeError | None]:
    """(stage, error) of the first check that refuses the config at ``path``, ("ok", None) if none does.

    The stages: ``load_config``; what ``stockbridge config check`` runs, in-process (it runs the
    backtest's own checks: strategy name and params, venues, calendar); the live bot's venue plan.
    Any other exception propagates: that is the traceback the property forbids."""
    try:
        cfg = load_config(path)
    except ConfigError as err:
        return "load", err
    _assert_finite(cfg.model_dump(exclude={"strategy": {"params"}}), ())  # params: checked below, once validated
    from stockbridge.commands.config import check
    from stockbridge.commands.preflight import check_backtest_config

    warnings = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(warnings):
            check(path)
    except ConfigError as err:
        return "check", err
    for line in warnings.getvalue().splitlines():
        assert line.startswith("warning: "), f"config check: a warning over more than one line: {warnings.getvalue()!r}"
    if cfg.strategy is not None:  # else `config check` warns and has no params to check
        _, params = check_backtest_config(cfg, path)
        assert all(map(math.isfinite, params.to_array())), f"strategy params not finite: {params!r}"
    from execution.live import plan_venues

    try:
        plan_venues(cfg, str(path), real_money=False, skip=[])
    except StockbridgeError as err:  # LiveRefused: sandbox = false without --real-money, no venue to trade
        return "live", err
    return "ok", None


def write(path: Path, doc: dict) -> str:
    text = dumps(doc)
    if not _has_raw(doc):
        assert _same(tomllib.loads(text), doc), "the test's TOML writer did not round-trip"
    path.write_text(text, encoding="utf-8")
    return text


def test_the_base_document_passes_every_check(tmp_path):
    path = tmp_path / "base.toml"
    write(path, BASE)
    assert first_refusal(path) == ("ok", None)


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=mutated())
def test_mutated_config_loads_or_names_the_key(tmp_path, case):
    doc, done = case
    path = tmp_path / "fuzz.toml"
    write(path, doc)
    stage, err = first_refusal(path)
    if err is not None:
        check_error(err, path, doc, done, stage)


# -- what the fuzz found: each of these broke the property before its fix -------------------------

FOUND = [
    # (id, edits: (key path, value), the one error's key (a regex for a TOML position), words in its message)
    # a table key holding a line break, a dot or nothing was written as it is: several lines, or no key
    ("line break in a key", [(("risk", "new\nline"), 1.0)], 'risk."new\\nline"', "unknown key"),
    ("line separator in a key", [(("synth", "ls\u2028ps"), 1)], 'synth."ls\\u2028ps"', "unknown key"),
    ("CR LF in a param name", [(("strategy", "params", "crlf\r\n"), 1.0)], 'strategy.params."crlf\\r\\n"', "unknown parameter"),
    ("dot in a key", [(("venues", "bybit", "a.b"), 1)], 'venues.bybit."a.b"', "unknown key"),
    ("empty key", [(("",), 1)], '""', "unknown key"),
    # a name the user wrote, shown in the message as it is
    ("line break in a referenced name", [(("instruments", "AAPLx", "underlying"), "a\n" * 3)],
     "instruments.AAPLx.underlying", "'a\\na\\na\\n' is not a share"),
    ("line break in the strategy name", [(("strategy", "name"), "glft\n")], "strategy.name", "unknown strategy 'glft\\n'"),
    # one error per member of the union, keyed live.sandbox.bool and live.sandbox."literal['testnet']"
    ("sandbox neither bool nor testnet", [(("live", "sandbox"), "yes")], "live.sandbox", 'expected true, false or "testnet"'),
    # OverflowError from datetime.astimezone (the time in UTC is in year 0 or 10000)
    ("time in year 1 at +14:00", [(("instruments", "AAPLx", "multipliers", 0, "active_from"), "0001-01-01T00:00:00+14:00")],
     "instruments.AAPLx.multipliers.0.active_from", "int64-nanosecond"),
    ("TOML time in year 9999 at -14:00",
     [(("instruments", "AAPLx", "multipliers", 0, "active_from"), datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-14))))],
     "instruments.AAPLx.multipliers.0.active_from", "int64-nanosecond"),
    ("time string in year 9999 at -14:00", [(("backtest", "end"), "9999-12-31T23:59:59-14:00")], "backtest.end", "int64-nanosecond"),
    # accepted, then past int64 in the data generator and the replay
    ("time after 2262", [(("synth", "start"), "2300-01-01T00:00:00Z")], "synth.start", "int64-nanosecond"),
    # accepted by `config check`; the replay's to_ns raised ValueError midway
    ("scenario time not a time", [(("backtest", "scenarios", 0, "at"), "now")], "backtest.scenarios.0.at", "ISO-8601"),
    ("scenario end not a time", [(("backtest", "scenarios", 0, "until"), "2025-07-07")], "backtest.scenarios.0.until", "zone"),
    # ValueError from tomllib (int() refuses more than 4300 digits), RecursionError from tomllib
    ("integer of 5000 digits", [(("synth", "days"), Raw("9" * 5000))], _TOML_POSITION.pattern, "more than 4300 digits"),
    ("arrays nested 3000 deep", [(("risk", "max_position"), Raw("[" * 3000 + "]" * 3000))], _TOML_POSITION.pattern,
     "nested 3001 deep"),  # in the inline table risk = {...}
    # nan and inf were accepted where a bound does not exclude them
    ("nan hedge target", [(("risk", "hedge_target"), math.nan)], "risk.hedge_target", "finite"),
    ("inf tick", [(("venues", "bybit", "tick_size"), math.inf)], "venues.bybit.tick_size", "finite"),
    ("inf strategy param", [(("strategy", "params", "gamma"), math.inf)], "strategy.params.gamma", "finite"),
    # accepted; the live bot could not open a journal file with a NUL in its name
    ("NUL in the journal name", [(("live", "journal"), "j\x00.sqlite")], "live.journal", "printable"),
]


@pytest.mark.parametrize("edits,key,words", [c[1:] for c in FOUND], ids=[c[0] for c in FOUND])
def test_found_by_the_fuzz(tmp_path, edits, key, words):
    doc = copy.deepcopy(BASE)
    for where, value in edits:
        get(doc, where[:-1])[where[-1]] = value
    path = tmp_path / "found.toml"
    text = write(path, doc)
    stage, err = first_refusal(path)
    assert err is not None, "accepted"
    check_error(err, path, doc, [("replace", where) for where, _ in edits], stage)
    assert len(err.problems) == 1 and words in err.message, str(err)
    if key != _TOML_POSITION.pattern:
        assert err.key == key, str(err)
    else:  # TOML that does not load: the position is the line of the value
        assert _TOML_POSITION.fullmatch(err.key), str(err)
        line = int(err.key.split()[1].rstrip(","))
        assert str.__str__(edits[0][1])[:20] in text.splitlines()[line - 1], str(err)


def test_inf_exposure_cap_still_means_no_cap(tmp_path):
    doc = copy.deepcopy(BASE)
    doc["venues"]["bybit"]["exposure_cap"] = math.inf
    write(tmp_path / "cap.toml", doc)
    assert load_config(tmp_path / "cap.toml").venues["bybit"].exposure_cap == math.inf


# -- the real console script on a few fixed nasty mutations ----------------------------------------

DEMO_TEXT = (ROOT / "configs" / "demo.toml").read_text()
CLI_CASES = [
    # (what, edit of the demo text, key the one error line names)
    ("string for a number", lambda t: t.replace("tick_size = 0.01", 'tick_size = "one cent"', 1), "venues.bybit.tick_size"),
    ("unknown key", lambda t: t.replace("gap_z = 2.0", "gap_z = 2.0\ngapz = 3.0", 1), "sessions.gapz"),
    ("1e400 (inf) tick", lambda t: t.replace("tick_size = 0.01", "tick_size = 1e400", 1), "venues.bybit.tick_size"),
    ("unicode key", lambda t: t.replace("max_position = 100.0", 'max_position = 100.0\n"máx_position" = 1.0', 1),
     'risk."máx_position"'),
    ("line break in a key", lambda t: t.replace("max_position = 100.0", 'max_position = 100.0\n"max\\nposition" = 1.0', 1),
     'risk."max\\nposition"'),
    ("nan fee", lambda t: t.replace("maker_fee_bps = 2.0", "maker_fee_bps = nan", 1), "venues.kraken.maker_fee_bps"),
    ("time in year 1 at +14:00", lambda t: t.replace("2025-07-07T13:30:00Z", "0001-01-01T00:00:00+14:00", 1),
     "instruments.AAPLx.multipliers.0.active_from"),
    ("integer of 5000 digits", lambda t: t.replace("days = 5", "days = " + "9" * 5000, 1),
     f"line {DEMO_TEXT.splitlines().index('days = 5') + 1}, column 8"),
]


@pytest.mark.parametrize("what,edit,key", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_one_error_line_naming_the_key(run_cli, tmp_path, what, edit, key):
    text = edit(DEMO_TEXT)
    assert text != DEMO_TEXT
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    res = run_cli("config", "check", path)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {key}: "), res.stderr
