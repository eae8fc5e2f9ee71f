"""Every code block of README.md and docs/*.md runs here, so the documentation cannot drift.

A page's ```python blocks run in order in one fresh interpreter (one namespace per page, as
a reader who pastes them one after another; the pages side by side, one core each, and no test
depends on time), in a folder of its own beside a ``shared/data``
folder of tiny datasets in the official file formats: ``PYCNN_DATA_DIR`` points there (so
``load_data()`` finds them, and ``--data-dir ../shared/data`` in a command means them), and
the network is never used (``PYCNN_DATASETS_URL`` is a closed local port). Blocks in other
languages must say what happens to them, in an HTML comment on the line before the fence
(invisible on GitHub and in MkDocs)::

    <!-- docs-test: run -->                 a bash block, run with ``bash -e`` in that folder
    <!-- docs-test: run needs MODULE -->    ... only where MODULE imports (an optional extra)
    <!-- docs-test: run needs-command C --> ... only where the command C is on PATH
    <!-- docs-test: skip REASON -->         not run, and why (installs, downloads, takes minutes)
    <!-- docs-test: needs MODULE -->        a python block that runs only where MODULE imports
    <!-- docs-test: cli-synopsis -->        a text block: the command-line synopsis, compared
                                            option by option with ``pycnn.cli.build_parser()``
    <!-- docs-test: layout -->              a text block: the repository layout; every path it
                                            names exists and every module of pycnn/ is named

```text blocks without a marker are program output, not code. The reference pages
(``docs/api/``) hold no code blocks, only mkdocstrings directives; the objects they name must
import, and every ``Args:`` entry of their docstrings must name a parameter of the signature
(test_api_reference_docstrings_match_their_signatures; ``mkdocs build --strict`` in CI
renders them).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import importlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import pycnn
from dataset_fixtures import write_cifar_bin, write_idx_dataset

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<lang>[\w+-]*)[^\n]*$")
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<kind>[\w-]+)\s*(?P<arg>.*?)\s*-->\s*$")
MARKER_KINDS = {"run", "skip", "needs", "cli-synopsis", "layout"}
TIMEOUT = 300  # seconds per page: generous, so that a loaded machine never fails a test


class Block:
    def __init__(self, page: Path, line: int, lang: str, source: str, marker, arg: str):
        self.page, self.line, self.lang, self.source, self.marker, self.arg = page, line, lang, source, marker, arg

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, with the marker on the line before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.group("indent"), m.group("fence"), m.group("lang").lower()
        start = i + 1
        j = start
        while j < len(lines) and not (lines[j].strip().startswith(fence) and lines[j].strip().strip(fence[0]) == ""):
            j += 1
        body = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip() for ln in lines[start:j]]
        marker = arg = None
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        mk = MARKER.match(lines[k]) if k >= 0 and i - k <= 2 else None
        if mk:
            marker, arg = mk.group("kind"), mk.group("arg")
        found.append(Block(page, start + 1, lang, "\n".join(body) + "\n", marker, arg))
        i = j + 1
    return found


ALL_BLOCKS = [b for page in PAGES for b in blocks(page)]


# ----------------------------------------------------------------------------- the rules

def test_the_pages_exist_and_have_code():
    names = {p.name for p in PAGES}
    for name in ("README.md", "getting-started.md", "your-data.md", "models-and-layers.md", "training.md",
                 "saving.md", "pictures.md", "performance.md", "distributed.md", "native-core.md", "building.md",
                 "development.md", "cli.md", "index.md"):
        assert name in names, name
    assert sum(b.lang == "python" for b in ALL_BLOCKS) >= 20


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=lambda b: b.where)
def test_every_code_block_is_run_or_says_why_not(block):
    if block.marker is not None:
        assert block.marker in MARKER_KINDS, f"{block.where}: unknown docs-test marker {block.marker!r}"
    if block.marker == "skip":
        assert len(block.arg) >= 10, f"{block.where}: a skipped block must say why (<!-- docs-test: skip REASON -->)"
    elif block.marker == "needs":
        assert block.lang == "python" and block.arg, f"{block.where}: 'needs MODULE' is for python blocks"
    elif block.marker == "run":
        assert block.lang in ("bash", "sh", "shell"), f"{block.where}: 'run' is for bash blocks"
        assert re.fullmatch(r"(needs(-command)? [\w.-]+)?", block.arg), f"{block.where}: run [needs[-command] NAME]"
    elif block.marker in ("cli-synopsis", "layout"):
        assert block.lang == "text", f"{block.where}: {block.marker} is checked on a text block"
    elif block.lang != "python":
        assert block.lang == "text", (
            f"{block.where}: a ```{block.lang or '(no language)'} block must be run or say why not: put "
            "<!-- docs-test: run --> or <!-- docs-test: skip REASON --> on the line before it (tests/test_docs.py)")


# ----------------------------------------------------------------------------- running the pages

@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """``root/shared/data`` with tiny CIFAR-10, MNIST and Fashion-MNIST files; pages run in ``root/<page>``."""
    root = tmp_path_factory.mktemp("docs")
    data = root / "shared" / "data"
    rng = np.random.default_rng(0)
    write_cifar_bin(data / "cifar-10-batches-bin", rng, n=40)  # 200 training and 40 test images
    write_idx_dataset(data / "mnist", rng, n_train=128, n_test=32)
    write_idx_dataset(data / "fashion-mnist", rng, n_train=128, n_test=32)
    return root


def _environment(root: Path) -> dict:
    env = dict(os.environ)
    package_parent = str(Path(pycnn.__file__).resolve().parents[1])  # the pycnn this test imported
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    env.update(PYCNN_DATA_DIR=str(root / "shared" / "data"), PYCNN_CACHE_DIR=str(root / "cache"),
               PYCNN_DATASETS_URL="http://127.0.0.1:9", MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    return env


RUNNER = textwrap.dedent('''
    import importlib.util, json, shutil, subprocess, sys, traceback
    namespace = {"__name__": "__main__"}
    for block in json.load(open(sys.argv[1])):
        if block["needs"] and importlib.util.find_spec(block["needs"]) is None:
            print(f"docs-test: {block['where']} not run: {block['needs']} is not installed", flush=True)
            continue
        if block["needs_command"] and shutil.which(block["needs_command"]) is None:
            print(f"docs-test: {block['where']} not run: no {block['needs_command']} command", flush=True)
            continue
        print(f"docs-test: running {block['where']}", flush=True)
        try:
            if block["lang"] == "python":
                # Padded so that a traceback's line numbers are the page's.
                code = compile("\\n" * (block["line"] - 1) + block["source"], block["page"], "exec")
                exec(code, namespace)
            else:
                subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block["source"]], check=True)
        except BaseException:
            traceback.print_exc()
            sys.stdout.flush()
            sys.exit(f"docs-test: the block at {block['where']} failed")
''')


def _needs(block: Block) -> dict:
    """What a block needs to run: {'needs': module or None, 'needs_command': command or None}."""
    words = block.arg.split() if block.marker in ("run", "needs") else []
    if block.marker == "needs":
        return {"needs": words[0], "needs_command": None}
    pairs = dict(zip(words[::2], words[1::2]))
    return {"needs": pairs.get("needs"), "needs_command": pairs.get("needs-command")}


def _runnable(page: Path) -> list[Block]:
    return [b for b in blocks(page) if (b.lang == "python" and b.marker in (None, "needs")) or b.marker == "run"]


RUNNABLE_PAGES = [p for p in PAGES if _runnable(p)]


def _run_page(page: Path, root: Path) -> subprocess.CompletedProcess:
    work = root / page.stem
    work.mkdir()
    todo = [{"where": b.where, "page": str(b.page.relative_to(REPO)), "line": b.line, "lang": b.lang,
             "source": b.source, **_needs(b)} for b in _runnable(page)]
    if shutil.which("mpirun") is None or "asan" in os.environ.get("LD_PRELOAD", ""):
        # The [mpi] extra is optional; under the sanitizers (.ci/sanitize.sh) mpirun's own children
        # would not be instrumented, and the plain run of the suite ran these blocks.
        todo = [b for b in todo if b["lang"] == "python" or "mpirun" not in b["source"]]
    (work / ".blocks.json").write_text(json.dumps(todo))
    env = _environment(root)
    env["OMP_NUM_THREADS"] = "1"  # the pages run side by side, one core each
    return subprocess.run([sys.executable, "-c", RUNNER, str(work / ".blocks.json")], cwd=work, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def page_runs(sandbox):
    """Every page started at once, as many at a time as there are cores; {page: Future}."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1))
    # The pages with the most commands (each a new process) first: they take longest.
    order = sorted(RUNNABLE_PAGES, key=lambda page: -sum(b.lang != "python" for b in _runnable(page)))
    futures = {page: pool.submit(_run_page, page, sandbox) for page in order}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("page", RUNNABLE_PAGES, ids=lambda p: p.name)
def test_the_code_of_each_page_runs(page, page_runs):
    proc = page_runs[page].result()
    assert proc.returncode == 0, f"{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"


# ----------------------------------------------------------------------------- text blocks checked

def _synopsis_options(text: str) -> dict[str, set[str]]:
    """{command: options and choices} from the synopsis: every '--x' and every {a,b} word."""
    commands: dict[str, set[str]] = {}
    current = None
    for line in text.splitlines():
        if re.match(r"^(?:python -m pycnn|pycnn)\s+-", line.strip()):
            current = None  # --version, --help: the top-level parser
            continue
        m = re.match(r"^(?:python -m pycnn|pycnn)\s+(\w+)", line.strip())
        if m:
            current = m.group(1)
            commands.setdefault(current, set())
        if current is None:
            continue
        commands[current] |= set(re.findall(r"--[\w-]+", line))
        for group in re.findall(r"\{([\w,|-]+)\}", line):
            commands[current] |= set(re.split(r"[,|]", group))
    return commands


def _parser_options() -> dict[str, tuple[set[str], set[str]]]:
    """{command: (its --options, the string choices of its arguments)}."""
    from pycnn import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found = {}
    for name, p in sub.choices.items():
        options, choices = set(), set()
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            options |= {o for o in action.option_strings if o.startswith("--")}
            choices |= {c for c in (action.choices or ()) if isinstance(c, str)}
        found[name] = (options, choices)
    return found


def test_the_cli_synopsis_lists_every_option_and_choice():
    synopses = [b for b in ALL_BLOCKS if b.marker == "cli-synopsis"]
    assert synopses, "docs/cli.md has a <!-- docs-test: cli-synopsis --> block"
    documented = _synopsis_options("".join(b.source for b in synopses))
    actual = _parser_options()
    assert set(actual) <= set(documented), sorted(set(actual) - set(documented))
    for command, (options, choices) in actual.items():
        shown = documented[command]
        assert {w for w in shown if w.startswith("--")} == options, (
            f"{command}: missing from the synopsis {sorted(options - shown)}, "
            f"not an option {sorted(w for w in shown - options if w.startswith('--'))}")
        assert choices <= shown, f"{command}: choices missing from the synopsis {sorted(choices - shown)}"


def test_the_cli_help_says_what_the_docs_say():
    from pycnn import cli

    text = cli.build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    flat = " ".join(text.split())
    assert "new draws every batch" in flat and "each epoch" not in flat
    cli_page = " ".join((REPO / "docs" / "cli.md").read_text().split())
    for phrase in ("new draws every batch", "--weights-only", "--resume", "pycnn --help"):
        assert phrase in cli_page, phrase


def _layout_entries(text: str) -> list[Path]:
    """The paths a layout block names: the first column of each line indented 0 or 2 spaces
    (names separated by ', '); an indented line's names are inside the last top-level folder."""
    entries, folder = [], REPO
    for line in text.splitlines():
        indent = len(line) - len(line.lstrip(" "))
        if not line.strip() or indent > 2:
            continue  # a description's continuation
        column = re.split(r"\s{2,}", line.strip())[0]
        for name in (n.strip() for n in column.split(",")):
            base = REPO if indent == 0 else folder
            entries.append(base / name.rstrip("/"))
            if indent == 0 and name.endswith("/"):
                folder = REPO / name.rstrip("/")
    return entries


def test_the_layout_names_every_module_and_only_paths_that_exist():
    layouts = [b for b in ALL_BLOCKS if b.marker == "layout"]
    assert len(layouts) == 1, "one <!-- docs-test: layout --> block"
    entries = _layout_entries(layouts[0].source)
    for path in entries:
        assert path.exists(), f"the layout names {path.relative_to(REPO)}, which does not exist"
    for path in sorted((REPO / "pycnn").iterdir()):
        if path.name.startswith("_") or path.suffix not in (".py", "") or path.name == "__pycache__":
            continue
        assert path in entries, f"the layout (docs/development.md) does not list pycnn/{path.name}"
    for name in ("CHANGELOG.md", "csrc/cuda", "docs", "bench", ".ci", "tests", "mkdocs.yml"):
        assert REPO / name in entries, name


# ----------------------------------------------------------------------------- the API reference

def _reference_objects() -> list[str]:
    names = []
    for page in sorted((REPO / "docs" / "api").glob("*.md")):
        names += re.findall(r"^:::\s*([\w.]+)", page.read_text(), re.M)
    return names


def _resolve(dotted: str):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def _documented_args(doc: str) -> list[str]:
    """The names of a Google-style ``Args:`` section; an entry may name several, 'a, b: ...'."""
    names, inside, indent = [], False, None
    for line in (doc or "").splitlines():
        stripped = line.strip()
        if re.match(r"^(Args|Arguments|Parameters):$", stripped):
            inside, indent = True, None
            continue
        if not inside:
            continue
        if not stripped:
            continue
        this = len(line) - len(line.lstrip())
        if indent is None:
            indent = this
        if this < indent or re.match(r"^(Returns|Raises|Yields|Example|Examples|Note|Notes|Attributes):", stripped):
            inside = False
            continue
        if this == indent:
            m = re.match(r"^([\w*][\w*, ]*?)\s*(\([^)]*\))?:", stripped)
            if m:
                names += [n.strip().lstrip("*") for n in m.group(1).split(",") if n.strip()]
    return names


def _signature_names(fn) -> set[str] | None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None  # **kwargs: anything may be documented
    return set(sig.parameters)


def _documented_callables(obj):
    """(label, callable, docstring) for the object and, for classes and modules, their members."""
    if inspect.ismodule(obj):
        public = getattr(obj, "__all__", None) or [n for n in vars(obj) if not n.startswith("_")]
        for name in public:
            member = getattr(obj, name, None)
            if (inspect.isfunction(member) or inspect.isclass(member)) and \
                    getattr(member, "__module__", "").startswith(obj.__name__):
                yield from _documented_callables(member)
    elif inspect.isclass(obj):
        yield f"{obj.__module__}.{obj.__qualname__}", obj.__init__, obj.__doc__
        if obj.__init__.__doc__ and obj.__init__ is not object.__init__:
            yield f"{obj.__module__}.{obj.__qualname__}.__init__", obj.__init__, obj.__init__.__doc__
        for name, member in vars(obj).items():
            if not name.startswith("_") and inspect.isfunction(member):
                yield f"{obj.__module__}.{obj.__qualname__}.{name}", member, member.__doc__
    elif callable(obj):
        yield f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', obj)}", obj, obj.__doc__


def test_api_reference_docstrings_match_their_signatures():
    names = _reference_objects()
    assert len(names) >= 20, names
    wrong = []
    for dotted in names:
        obj = _resolve(dotted)  # an object the reference names must exist
        for label, fn, doc in _documented_callables(obj):
            allowed = _signature_names(fn)
            if allowed is None:
                continue
            for arg in _documented_args(doc):
                if arg not in allowed:
                    wrong.append(f"{label}: documents {arg!r}, which is not a parameter")
    assert not wrong, "\n".join(wrong)
