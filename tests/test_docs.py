"""The docs: the MkDocs site builds with --strict (every page in the nav, every link and anchor resolves), and
the README stays short, starts with the two commands and points only at things that exist."""

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def code_blocks(path: Path, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(path.read_text()) if lang == language]


def doc_pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built the way CI and `make docs` build it: offline, --strict (a warning fails the build)."""
    try:
        import mkdocs  # noqa: F401
        import material  # noqa: F401
    except ImportError:
        pytest.fail("mkdocs and mkdocs-material are dev dependencies: pip install -c requirements.lock -e '.[dev]'")
    out = tmp_path_factory.mktemp("site")
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return out


def test_docs_site_builds_strict(site):
    for page in doc_pages():
        built = site / ("index.html" if page.stem == "index" else f"{page.stem}/index.html")
        assert built.is_file(), f"docs/{page.name} was not built (is it in mkdocs.yml's nav?)"
    # Offline: no web fonts, no CDN (theme.font: false; no plugin that fetches).
    html = (site / "index.html").read_text()
    assert "fonts.googleapis.com" not in html and "fonts.gstatic.com" not in html


def test_readme_is_short_and_starts_with_the_two_commands():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; at most 200 (the rest belongs in docs/)"
    first = FENCE.search(README.read_text())
    assert first is not None
    commands = [line.split("#")[0].strip() for line in first.group(2).splitlines()]
    assert commands == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


@pytest.mark.parametrize("page", [README, *doc_pages()], ids=lambda p: p.name)
def test_links_resolve(page, site):
    """Relative links of the README (which MkDocs does not build) and the docs' links to files outside docs/."""
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: link to {target}: no such file"
        if anchor and file.suffix == ".md" and file.parent == DOCS:
            built = site / ("index.html" if file.stem == "index" else f"{file.stem}/index.html")
            assert f'id="{anchor}"' in built.read_text(), f"{page.name}: link to {target}: no such anchor"


def _defined_names(module: str) -> set[str] | None:
    """Top-level names of a kidneyct module, read from its source (nothing imported: no torch)."""
    base = ROOT / "src" / Path(*module.split("."))
    source = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    if not source.is_file():
        return None
    names = set()
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    if base.is_dir():
        names.update(p.stem for p in base.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file())
    return names


@pytest.mark.parametrize("page", [README, *doc_pages()], ids=lambda p: p.name)
def test_python_examples_name_what_exists(page):
    for block in code_blocks(page, "python"):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and node.module.startswith("kidneyct"):
                names = _defined_names(node.module)
                assert names is not None, f"{page.name}: no module {node.module}"
                missing = {a.name for a in node.names} - names
                assert not missing, f"{page.name}: {node.module} has no {sorted(missing)}"
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "kidneyct":
                assert node.attr in _defined_names("kidneyct"), f"{page.name}: kidneyct has no {node.attr}"


def _commands(block: str):
    """Each `kidneyct ...` command line of a shell block (continuations joined, comments dropped) as tokens."""
    for line in block.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line, comments=True)
        for i, token in enumerate(tokens):
            if token == "kidneyct" or token.endswith("/kidneyct"):
                yield tokens[i + 1:]
                break


@pytest.mark.parametrize("page", [README, *[p for p in doc_pages() if p.name != "experiments.md"]],
                         ids=lambda p: p.name)
def test_command_examples_use_existing_commands_and_options(page):
    """The shell examples name commands and options the CLI has (the experiment log keeps its history as run)."""
    from kidneyct.cli import build_parser

    parser = build_parser()
    for block in code_blocks(page, "bash"):
        for tokens in _commands(block):
            action = parser
            while tokens and tokens[0] in _subcommands(action):
                action, tokens = _subcommands(action)[tokens[0]], tokens[1:]
            assert action is not parser, f"{page.name}: unknown command in `kidneyct {' '.join(tokens)}`"
            for token in tokens:
                option = token.split("=")[0]
                if option.startswith("--"):
                    assert option in action._option_string_actions, f"{page.name}: {action.prog} has no {option}"


def _subcommands(parser) -> dict:
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            return action.choices
    return {}
