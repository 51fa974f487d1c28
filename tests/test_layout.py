"""The package's shape: no import cycles (lazy imports included), the library never imports the command line,
no module over ~500 lines, and no citation of a document a fresh clone does not have."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mdt_teach"
HEAVY = {"diffusers", "sklearn", "matplotlib", "ipywidgets", "IPython", "torch_fidelity", "PIL", "scipy", "tqdm"}


def module_name(path: Path) -> str:
    """mdt_teach/cli/train.py → mdt_teach.cli.train; mdt_teach/cli/__init__.py → mdt_teach.cli."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def internal_imports(path: Path) -> set[str]:
    """Every mdt_teach module `path` imports, at the top or inside a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.startswith("mdt_teach"):
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mdt_teach"))
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return {m for m in found if m in modules and m != name}


def graph() -> dict[str, set[str]]:
    return {module_name(p): internal_imports(p) for p in PACKAGE.rglob("*.py")}


def test_the_graph_sees_imports():
    g = graph()
    assert "mdt_teach.recipe" in g["mdt_teach.train"] and "mdt_teach.checkpoint" in g["mdt_teach.cli.convert"]


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(g.get(node, ())):
            if nxt == "mdt_teach":                                # the package's __init__ imports config only
                continue
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else path + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    assert not cycles, " | ".join(" → ".join(c) for c in cycles)


def test_the_library_never_imports_the_command_line():
    offenders = {m: sorted(i for i in deps if i.startswith("mdt_teach.cli"))
                 for m, deps in graph().items() if not m.startswith("mdt_teach.cli") and m != "mdt_teach.__main__"}
    assert not {m: d for m, d in offenders.items() if d}


def test_internal_imports_are_at_the_top():
    """Only heavy third-party imports may hide inside functions; the package's own modules are imported on top."""
    hidden = []
    for path in PACKAGE.rglob("*.py"):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        for fn in ast.walk(ast.parse(path.read_text())):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("mdt_teach")):
                        hidden.append(f"{path.name}:{node.lineno}")
    assert not hidden, hidden


def test_no_module_over_500_lines():
    long = {p.name: n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long


def test_the_model_files_need_no_line_over_100_characters():
    """models.py was split (config → model_config.py, size → model_size.py) so it fits without long lines."""
    long = [f"{p.relative_to(ROOT)}:{i} ({len(line)} chars)"
            for p in (PACKAGE / name for name in ("models.py", "model_config.py", "model_size.py"))
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if len(line) > 100]
    assert not long, long


def test_no_citation_of_documents_outside_the_repository():
    """The team's private notes are not in a clone: cite the paper, the official file and function, or a docs/
    page that exists. (The names are assembled here so that this file does not cite them itself.)"""
    notes = ["spec" + " §", "reference" + " spec", "mdt" + "_spec", "paper" + "_notes"]
    notes += [re.escape(name + ".md") for name in ("design", "conventions", "adan")]
    pattern = re.compile("|".join(notes))
    hits = [f"{p.relative_to(ROOT)}:{i}" for folder in ("mdt_teach", "tests", "benchmarks", "tools")
            for p in (ROOT / folder).rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, hits
    cited = {m for folder in ("mdt_teach", "tests", "benchmarks")
             for p in (ROOT / folder).rglob("*.py")
             for m in re.findall(r"docs/[\w.-]+\.md", p.read_text())}
    assert cited and all((ROOT / c).is_file() for c in cited), sorted(c for c in cited if not (ROOT / c).is_file())


# The library's layers, bottom to top, each module listed once: a module imports only from layers below its own
# (the faces on top — lesson figures and the command line — may import anything of the library).
LAYERS = (
    ("foundations", "config resources seeds same_settings distributed diffusion guidance layers masking model_config "
                    "optim ema vae race_summary"),
    ("the world, the models, sampling, files", "smileys checkpoint models sampling"),
    ("reading the world, pictures, sizes", "checker data images model_size compat"),
    ("scores, painters, recipes, caches", "painters metrics latent_cache recipe lessons"),
    ("data order, probes, plans, run logs", "data_order probe fid plan runlog"),
    ("training and FID sampling", "train fid_samples"),
    ("experiments and the short door", "race minimal_train"),
    ("the learning-rate sweep", "sweep"),
)
FACES = ("mdt_teach.viz", "mdt_teach.cli")


def test_imports_flow_down_the_layers():
    level = {f"mdt_teach.{m}": i for i, (_, names) in enumerate(LAYERS) for m in names.split()}
    listed = [m for _, names in LAYERS for m in names.split()]
    assert len(listed) == len(set(listed)), "a module is listed in two layers"
    g = graph()
    library = {m for m in g if not m.startswith(FACES) and m not in ("mdt_teach", "mdt_teach.__main__")}
    assert library == set(level), f"place every library module in one layer: {sorted(library ^ set(level))}"
    upward = [f"{m} ({LAYERS[level[m]][0]}) imports {d}" for m in sorted(library) for d in sorted(g[m])
              if d != "mdt_teach" and (d.startswith(FACES) or level[d] >= level[m])]
    assert not upward, "\n".join(upward)


def test_the_training_and_sampling_paths_import_no_widgets_or_plotting():
    """A torchrun worker of `train` or `sample-fid` imports no matplotlib, ipywidgets or IPython (fresh process)."""
    import subprocess
    import sys
    code = ("import sys, mdt_teach.train, mdt_teach.fid_samples, mdt_teach.race, mdt_teach.cli.sample_fid; "
            "print(sorted(m for m in ('matplotlib', 'ipywidgets', 'IPython', 'mdt_teach.viz') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout
