"""The tree's shape: rooms that import downward only, no import circles, no large files."""

from __future__ import annotations

import ast
import subprocess
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: pretrain's rooms, lowest floor first: a room may import only its own floor and below.
FLOORS = ["config", "runtime", "data", "checkpoint", "training", "export", "evaluation", "study"]
#: Command-line entry points kept at pretrain/'s top (thin modules over the rooms).
ENTRY_POINTS = {"__init__", "train", "evaluate", "export_hf", "generate", "params", "cloze_task"}
MAX_TRACKED_BYTES = 2 * 1024 * 1024


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """module -> the project modules it imports anywhere (functions included: a lazy
    import still makes a circle a reader has to untangle)."""
    files = {_module(p): p for pkg in ("pretrain", "data_prep", "megatron_patches")
             for p in (REPO / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for mod, path in files.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            for name in names:
                target = next((m for m in (name, name.rsplit(".", 1)[0]) if m in files), None)
                if target and target != mod and not mod.startswith(target + "."):
                    graph[mod].add(target)
    return graph


def test_pretrain_top_level_holds_only_rooms_and_entry_points():
    modules = {p.stem for p in (REPO / "pretrain").glob("*.py")}
    rooms = {p.name for p in (REPO / "pretrain").iterdir()
             if p.is_dir() and (p / "__init__.py").is_file()}
    assert modules == ENTRY_POINTS
    assert rooms == set(FLOORS)


def test_every_room_says_in_its_init_what_it_is_for():
    for room in FLOORS:
        doc = ast.get_docstring(ast.parse((REPO / "pretrain" / room / "__init__.py").read_text()))
        assert doc and doc.strip(), f"pretrain/{room}/__init__.py has no docstring"


def test_rooms_import_their_own_floor_or_below():
    upward = []
    for mod, targets in _imports().items():
        parts = mod.split(".")
        if parts[0] != "pretrain" or len(parts) < 3:
            continue
        for target in targets:
            t = target.split(".")
            if t[0] == "pretrain" and len(t) > 1 and t[1] in FLOORS and parts[1] in FLOORS \
                    and FLOORS.index(t[1]) > FLOORS.index(parts[1]):
                upward.append(f"{mod} -> {target}")
    assert not upward


def test_no_module_takes_part_in_an_import_circle():
    graph = _imports()
    circles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                circles.append(" -> ".join([*stack[stack.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not circles


def test_no_tracked_file_over_2_mb_outside_docs_results():
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                             check=True).stdout.decode().split("\0")
    large = [f"{name} ({(REPO / name).stat().st_size:,} bytes)" for name in tracked
             if name and not name.startswith("docs/results/") and (REPO / name).is_file()
             and (REPO / name).stat().st_size > MAX_TRACKED_BYTES]
    assert not large


def test_data_prep_and_megatron_patches_never_import_pretrain():
    below = [f"{mod} -> {target}" for mod, targets in _imports().items()
             if mod.split(".")[0] in ("data_prep", "megatron_patches")
             for target in targets if target.startswith("pretrain")]
    assert not below
