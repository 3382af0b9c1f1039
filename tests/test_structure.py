"""The code's shape, checked: no import cycles in common/, short functions, no CLI framework in the
library, and every script's --help shows the defaults it really runs with."""
import ast
import dataclasses
import importlib.util
import re
import subprocess
import sys

import click
import pytest

from common.models import CNNConfig
from common.recipe import TrainConfig
from partB.transfer import FINETUNE_RECIPE

from conftest import ROOT

COMMON = sorted((ROOT / "common").glob("*.py"))
PARTS = ("partA", "partB", "partC")
SCRIPTS = sorted(p for folder in PARTS + ("bench", "handin") for p in (ROOT / folder).glob("*.py")
                 if 'if __name__ == "__main__"' in p.read_text())
MAX_FUNCTION_LINES = 80


def common_imports(path):
    """The common.* modules `path` imports, at module level or inside functions (both make a dependency)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("common."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "common":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("common.")}
    return found


def test_common_has_no_import_cycle():
    graph = {p.stem: common_imports(p) - {p.stem} for p in COMMON}
    state = {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                raise AssertionError(f"import cycle: {' -> '.join(path + [dep])}")
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_the_cycle_check_can_fail(tmp_path):
    (tmp_path / "a.py").write_text("from common.b import x\n")
    assert common_imports(tmp_path / "a.py") == {"b"}


def top_level_imports(path):
    """The top-level packages (common, partA, ...) whose modules `path` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
    return found


def test_common_never_imports_a_part_and_no_part_imports_another():
    crossings = [f"common/{p.name}" for p in COMMON if top_level_imports(p) & set(PARTS + ("bench", "handin"))]
    for part in PARTS:
        for path in (ROOT / part).glob("*.py"):
            others = top_level_imports(path) & (set(PARTS + ("bench", "handin")) - {part})
            crossings += [f"{part}/{path.name} -> {sorted(others)}"] if others else []
    assert not crossings


def function_imports(path):
    """(line, top-level package) of every import inside a function of `path`."""
    found = set()
    for function in ast.walk(ast.parse(path.read_text())):
        for node in ast.walk(function) if isinstance(function, ast.FunctionDef) else ():
            if isinstance(node, ast.Import):
                found |= {(node.lineno, alias.name.split(".")[0]) for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add((node.lineno, node.module.split(".")[0]))
    return found


def test_the_standard_library_is_imported_at_the_top():
    """An import waits inside a function only to defer something heavy or optional (docs/design.md)."""
    waiting = [f"{path.relative_to(ROOT)}:{line} {package}" for folder in ("common", "handin", "bench") + PARTS
               for path in sorted((ROOT / folder).glob("*.py")) for line, package in function_imports(path)
               if package in sys.stdlib_module_names]
    assert not waiting


def test_code_only_one_part_uses_lives_in_that_part():
    """A common/ module that exactly one part (and nothing else in common/) imports belongs beside that part."""
    users = {p.stem: set() for p in COMMON}
    for folder in ("common",) + PARTS:
        for path in (ROOT / folder).glob("*.py"):
            for module in common_imports(path) & set(users):
                users[module].add(folder if folder != "common" else f"common.{path.stem}")
    single = {m: u for m, u in users.items() if len(u) == 1 and next(iter(u)) in PARTS}
    assert not single, f"used by one part only: {single}"


def test_no_private_names_of_torch_wandb_or_optuna_outside_tests():
    """Private names break on the next release of the library they belong to."""
    private = re.compile(r"torch\._C\b|torch\.ops\.mkldnn\._|torch\._nnpack|wandb\.sdk\.|optuna\.[\w.]*\b_\w+"
                         r"|from optuna[\w.]* import [^\n]*\b_\w")
    found = [f"{p.relative_to(ROOT)}:{n}" for folder in ("common", "bench", "handin") + PARTS
             for p in (ROOT / folder).glob("*.py") for n, line in enumerate(p.read_text().splitlines(), 1)
             if private.search(line)]
    assert not found


def test_no_function_in_common_is_longer_than_80_lines():
    long = []
    for path in COMMON:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.name}:{node.name} ({lines} lines)")
    assert not long


def test_the_library_does_not_depend_on_click_except_its_cli_module():
    users = [p.name for p in COMMON if p.name != "cli.py"
             and any(isinstance(n, ast.Import) and any(a.name == "click" for a in n.names)
                     for n in ast.parse(p.read_text()).body)]  # module level: __main__ blocks may use it
    assert not users


def load_command(script):
    """The click command object a script defines (imported, not run)."""
    spec = importlib.util.spec_from_file_location(f"script_{script.parent.name}_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return next(v for v in vars(module).values() if isinstance(v, click.Command))


def help_entries(help_text):
    """{option name: its whole help entry} from click's --help layout (an entry starts with '-' at the
    option column and runs until the next one)."""
    entries, current = {}, None
    for line in help_text.splitlines():
        stripped = line.strip()
        if line.startswith("  -") and not line.startswith("   "):
            names = re.findall(r"(?<![\w-])(--?[\w-]+)", stripped.split("  ")[0])
            current = names
            for name in names:
                entries[name] = stripped
        elif current and stripped:
            for name in current:
                entries[name] += " " + stripped
    return entries


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_scripts_help_shows_the_defaults_it_runs_with(script):
    """For each option with a default, --help prints that default — the value the command will use."""
    command = load_command(script)
    result = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    entries = help_entries(result.stdout)
    checked = 0
    for param in command.params:
        if not isinstance(param, click.Option) or param.hidden or param.multiple:
            continue
        if param.is_flag and not param.secondary_opts:
            continue  # a plain flag is off unless given
        if param.required or param.default is None or callable(param.default):
            continue  # none, or documented in the help text instead (e.g. "[default: the weights' own crop size]")
        option = max(param.opts, key=len)
        shown = re.search(r"\[default: ([^\]]+)\]", entries.get(option, ""))
        assert shown, f"{script.name}: {option} does not show its default {param.default!r}"
        value = shown.group(1).split(";")[0].strip()
        expected = {str(param.default)}
        if isinstance(param.default, bool):  # click shows the flag that is on: --augment / --no-augment
            expected = {param.opts[0].lstrip("-") if param.default else param.secondary_opts[0].lstrip("-")}
        squeeze = lambda text: text.replace(" ", "")  # noqa: E731 — click wraps long defaults across lines
        assert squeeze(value) in {squeeze(e) for e in expected}, (script.name, option, value, expected)
        checked += 1
    assert checked >= 1


def test_part_b_help_defaults_are_its_recipe():
    command = load_command(ROOT / "partB" / "finetune.py")
    defaults = {p.name: p.default for p in command.params}
    assert {k: defaults[k] for k in FINETUNE_RECIPE} == FINETUNE_RECIPE


def test_every_training_field_is_one_option_and_every_option_a_field():
    """An option is one edit: TrainConfig's fields generate the training flags (CNNConfig's defaults the model's)."""
    flagged = {f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("flag", True)}
    model = {f.name for f in dataclasses.fields(CNNConfig)} - {"input_size", "in_channels", "num_classes"}
    for script, expected in (("partA/train.py", flagged | model | {"base_filters", "organisation", "resume"}),
                             ("partB/finetune.py", None)):
        command = load_command(ROOT / script)
        options = {p.name for p in command.params if isinstance(p, click.Option)}
        assert flagged <= options, f"{script}: no flag for {sorted(flagged - options)}"
        if expected is not None:
            assert options == expected, f"{script}: flags without a field {sorted(options - expected)}"
    defaults = {p.name: p.default for p in load_command(ROOT / "partA/train.py").params}
    assert all(defaults[f.name] == f.default for f in dataclasses.fields(TrainConfig) if f.name in flagged)
