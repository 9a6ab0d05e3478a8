"""The Markdown stays true to the tree: every relative link and ``#anchor`` resolves (by
GitHub's anchor rules), every command a code block shows names a module or file that
exists, and the README stays a front door (at most 15 KB).

Each check is a function of a directory, so ``test_each_check_can_fail`` runs it on a
scratch copy with a fault put in and sees it reported.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README_LIMIT_BYTES = 15_000
#: Top-level directories of this repository: a ``python -m`` module under one of them must
#: be a file here, never something that merely imports from an installed copy.
_OWN_TOP = {"pretrain", "data_prep", "megatron_patches", "benchmarks", "scripts", "slurm",
            "tests"}
#: Code blocks in these languages are programs or data, not shell commands.
_NOT_SHELL = {"python", "py", "json", "yaml", "yml", "toml", "diff"}

_FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_HTML_ID = re.compile(r"""<a\s+(?:name|id)=["']([^"']+)["']""")
_INLINE_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
_INLINE_CODE = re.compile(r"(`+).*?\1")


def markdown_files(root: Path) -> list[Path]:
    """Tracked Markdown files of ``root`` (every ``*.md`` when it is not a git checkout)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--", "*.md"], cwd=root, check=True,
                             capture_output=True, text=True).stdout
        files = [root / p for p in out.split("\0") if p]
        if files:
            return sorted(f for f in files if f.is_file())
    except (OSError, subprocess.CalledProcessError):
        pass
    return sorted(p for p in root.rglob("*.md") if ".git" not in p.parts)


def _split_code(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str, str]]]:
    """(prose lines, code lines with their block's language), each with its line number."""
    prose, code = [], []
    fence, lang = None, ""
    for n, line in enumerate(text.splitlines(), 1):
        m = _FENCE.match(line)
        if fence is None and m:
            fence, lang = m.group(1), m.group(2).lower()
            continue
        if fence is not None:
            if line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
                fence = None
            else:
                code.append((n, line, lang))
            continue
        prose.append((n, line))
    return prose, code


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text, lower case, without punctuation other
    than ``-`` and ``_``, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors_of(path: Path) -> set[str]:
    """Every anchor a Markdown file offers: its headings (duplicates get -1, -2, ...) and
    explicit ``<a name=...>`` / ``<a id=...>``."""
    prose, _ = _split_code(path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    anchors = set()
    for _, line in prose:
        anchors.update(_HTML_ID.findall(line))
        m = _HEADING.match(line)
        if not m:
            continue
        slug = github_slug(m.group(2))
        if slug in seen:
            seen[slug] += 1
            anchors.add(f"{slug}-{seen[slug]}")
        else:
            seen[slug] = 0
            anchors.add(slug)
    return anchors


def links_of(path: Path) -> list[tuple[int, str]]:
    """Link targets outside code: inline links, images and reference definitions."""
    prose, _ = _split_code(path.read_text(encoding="utf-8"))
    found = []
    for n, line in prose:
        line = _INLINE_CODE.sub("", line)
        found += [(n, t) for t in _INLINE_LINK.findall(line)]
        m = _REF_DEF.match(line)
        if m:
            found.append((n, m.group(1)))
    return found


def broken_links(root: Path) -> list[str]:
    """``file:line: target (why)`` for every relative link or anchor that does not resolve."""
    problems = []
    anchor_cache: dict[Path, set[str]] = {}
    for md in markdown_files(root):
        for n, target in links_of(md):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("//"):
                continue  # http:, https:, mailto:, ...: not checked offline
            where = f"{md.relative_to(root)}:{n}: {target}"
            path_part, _, anchor = target.partition("#")
            dest = (md.parent / path_part).resolve() if path_part else md
            if path_part.startswith("/"):
                problems.append(f"{where} (absolute path)")
                continue
            if not dest.exists():
                problems.append(f"{where} (no such file)")
                continue
            try:
                dest.relative_to(root.resolve())
            except ValueError:
                problems.append(f"{where} (outside the repository)")
                continue
            if anchor:
                if dest.is_dir() or dest.suffix.lower() != ".md":
                    problems.append(f"{where} (an anchor into a non-Markdown target)")
                    continue
                if dest not in anchor_cache:
                    anchor_cache[dest] = anchors_of(dest)
                if anchor not in anchor_cache[dest]:
                    problems.append(f"{where} (no heading with anchor #{anchor})")
    return problems


def _segments(code_lines: list[tuple[int, str, str]]) -> list[tuple[int, list[str]]]:
    """Shell commands of the code lines (continuations joined, comments dropped), as
    tokens, split at ``|``, ``;``, ``&&`` and ``||``."""
    out, buf, start = [], "", 0
    for n, line, lang in code_lines:
        if lang in _NOT_SHELL:
            continue
        if not buf:
            start = n
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        try:
            tokens = shlex.split(buf, comments=True)
        except ValueError:  # an unbalanced quote in sample output: plain words
            tokens = buf.split("#", 1)[0].split()
        buf = ""
        seg: list[str] = []
        for tok in tokens:
            if tok in {"|", ";", "&&", "||", "&", "do", "then"} or tok.endswith(";"):
                if tok.endswith(";") and tok != ";":
                    seg.append(tok[:-1])
                out.append((start, seg))
                seg = []
            else:
                seg.append(tok)
        out.append((start, seg))
    return [(n, s) for n, s in out if s]


def commands_of(path: Path) -> list[tuple[int, str, str]]:
    """``(line, kind, name)`` for every ``python -m MODULE``, ``python PATH.py``,
    ``torchrun ...``, ``bash PATH`` and ``sbatch ... PATH`` in the file's code blocks."""
    _, code = _split_code(path.read_text(encoding="utf-8"))
    found = []
    for n, tokens in _segments(code):
        for i, tok in enumerate(tokens):
            exe = tok.rsplit("/", 1)[-1]
            rest = tokens[i + 1:]
            if re.fullmatch(r"python[\d.]*", exe) or exe == "torchrun":
                for j, arg in enumerate(rest):
                    if arg == "-m" and j + 1 < len(rest):
                        found.append((n, "module", rest[j + 1]))
                        break
                    if arg.endswith(".py") and not arg.startswith("-"):
                        found.append((n, "file", arg))
                        break
                    if exe != "torchrun" and not arg.startswith("-"):
                        break  # python's first positional is its script
            elif exe == "bash" and rest and not rest[0].startswith("-"):
                found.append((n, "file", rest[0]))
            elif exe == "sbatch":
                scripts = [a for a in rest if a.endswith(".sh") and not a.startswith("-")]
                if scripts:
                    found.append((n, "file", scripts[0]))
    return [(n, kind, name) for n, kind, name in found if "..." not in name]


def _module_exists(root: Path, module: str) -> bool:
    parts = module.split(".")
    if parts[0] in _OWN_TOP or (root / parts[0]).is_dir():
        base = root.joinpath(*parts)
        return (base.with_suffix(".py").is_file() or (base / "__main__.py").is_file()
                or (base / "__init__.py").is_file())
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_commands(root: Path) -> list[str]:
    """``file:line: kind name`` for every command whose module or file does not exist."""
    problems = []
    for md in markdown_files(root):
        for n, kind, name in commands_of(md):
            ok = (_module_exists(root, name) if kind == "module"
                  else (root / name).is_file() or (md.parent / name).is_file())
            if not ok:
                problems.append(f"{md.relative_to(root)}:{n}: {kind} {name}")
    return problems


def readme_too_big(root: Path) -> list[str]:
    size = (root / "README.md").stat().st_size
    return [f"README.md is {size:,} bytes (limit {README_LIMIT_BYTES:,})"] \
        if size > README_LIMIT_BYTES else []


def test_every_relative_link_and_anchor_resolves():
    assert broken_links(REPO) == []


def test_every_command_in_a_code_block_names_something_that_exists():
    assert missing_commands(REPO) == []


def test_the_readme_stays_a_front_door():
    assert readme_too_big(REPO) == []


@pytest.mark.parametrize("heading, slug", [
    ("How a job stops: preemption, time limits, cancel, crashes, hangs",
     "how-a-job-stops-preemption-time-limits-cancel-crashes-hangs"),
    ("Design study (measured, CPU)", "design-study-measured-cpu"),
    ("lev_overhead — LEV vs tied step time", "lev_overhead--lev-vs-tied-step-time"),
    ("Measured (2-core, Python 3.11, tokenizers 0.23.3, 1 thread/process)",
     "measured-2-core-python-311-tokenizers-0233-1-threadprocess"),
    ("`python -m pretrain.train` and [LEV](docs/LEV.md)", "python--m-pretraintrain-and-lev"),
])
def test_github_slugs(heading, slug):
    assert github_slug(heading) == slug


def test_duplicate_headings_get_numbered_anchors(tmp_path):
    (tmp_path / "a.md").write_text("# Results\n\n## Results\n\n```\n# Results\n```\n")
    assert anchors_of(tmp_path / "a.md") == {"results", "results-1"}


def test_each_check_can_fail(tmp_path):
    """A scratch copy of the Markdown (not the shared tree) with one fault of each kind."""
    scratch = tmp_path / "repo"
    for md in markdown_files(REPO):
        dest = scratch / md.relative_to(REPO)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(md, dest)
    for top in ("pretrain", "data_prep", "scripts", "slurm", "benchmarks"):
        for f in (REPO / top).rglob("*"):
            if f.is_file() and f.suffix in {".py", ".sh", ".yaml"}:
                dest = scratch / f.relative_to(REPO)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, dest)
    for f in (REPO / "docs").rglob("*"):  # images and data the pages link to
        if f.is_file():
            dest = scratch / f.relative_to(REPO)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                shutil.copyfile(f, dest)
    for name in ("LICENSE", "CITATION.cff", "CHANGELOG.md", "pyproject.toml"):
        if (REPO / name).is_file():
            shutil.copyfile(REPO / name, scratch / name)
    # Whatever the tree itself gets wrong is reported already; the faults put in must be new.
    links_before, commands_before = set(broken_links(scratch)), set(missing_commands(scratch))

    readme = scratch / "README.md"
    good = readme.read_text(encoding="utf-8")
    readme.write_text(good + "\nSee [the guide](docs/no_such_page.md) and "
                      "[LEV](docs/LEV.md#no-such-heading).\n\n```bash\n"
                      "python -m pretrain.no_such_tool --help\nbash scripts/no_such.sh\n"
                      "sbatch --nodes=2 slurm/no_such_job.sh\npython data_prep/no_such.py\n```\n",
                      encoding="utf-8")
    links = set(broken_links(scratch)) - links_before
    assert any("docs/no_such_page.md (no such file)" in p for p in links)
    assert any("#no-such-heading (no heading" in p for p in links)
    missing = " ".join(set(missing_commands(scratch)) - commands_before)
    for name in ("pretrain.no_such_tool", "scripts/no_such.sh", "slurm/no_such_job.sh",
                 "data_prep/no_such.py"):
        assert name in missing

    readme.write_text(good + "x" * README_LIMIT_BYTES, encoding="utf-8")
    assert readme_too_big(scratch)


def test_the_study_report_writes_no_absolute_path(tmp_path, monkeypatch):
    """``python -m pretrain.study report`` copies evaluation pages into docs/results/:
    the paths in them come out relative, whatever machine wrote them."""
    from pretrain.study.report import _copy_report

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs" / "study"
    src = out / "sweep" / "shakespeare" / "report"
    src.mkdir(parents=True)
    shards = out / "shakespeare" / "shards"
    (src / "report.md").write_text(f"Validation split of `{shards}` (10 tokens)\n")
    (src / "eval.json").write_text(f'{{"data": "{shards}"}}\n')
    _copy_report(src, tmp_path / "results", out)
    for name in ("report.md", "eval.json"):
        text = (tmp_path / "results" / name).read_text()
        assert str(tmp_path) not in text and "runs/study/shakespeare/shards" in text
