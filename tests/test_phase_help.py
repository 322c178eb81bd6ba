"""``main.py --phase=X --help`` lists exactly the flags phase X reads, grouped; ``--helpfull``
keeps every flag. What a phase reads is found in main.py's source (every ``FLAGS.name`` and
``FLAGS["name"]`` in the phase function and the helpers it calls), not copied from the table."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "main.py"


def _read_by_phase() -> dict[str, set[str]]:
    tree = ast.parse(MAIN.read_text())
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}

    def direct(fn):
        flags_read, calls = set(), set()
        for node in ast.walk(fn):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "FLAGS":
                flags_read.add(node.attr)
            elif (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "FLAGS"
                  and isinstance(node.slice, ast.Constant)):
                flags_read.add(node.slice.value)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in funcs:
                calls.add(node.func.id)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_require":
                flags_read.update(a.value for a in node.args if isinstance(a, ast.Constant))
        return flags_read, calls

    out = {}
    for name in funcs:
        if not name.startswith("phase_") or name == "phase_help":
            continue
        seen, todo, read = set(), [name], set()
        while todo:
            f = todo.pop()
            if f in seen:
                continue
            seen.add(f)
            r, c = direct(funcs[f])
            read |= r
            todo.extend(c)
        out[name[len("phase_"):]] = read - {"phase"}
    return out


def _listed(text: str) -> set[str]:
    return set(re.findall(r"^  --(\w+):", text, flags=re.M))


def _help(*args):
    proc = subprocess.run([sys.executable, str(MAIN), *args], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_the_source_scan_finds_the_phases():
    read = _read_by_phase()
    assert set(read) == {"train", "test", "score", "predict", "convert", "export", "demo"}
    assert {"input", "median_gate", "calibrate_frames", "threshold", "hop_channels"} <= read["predict"]


@pytest.mark.parametrize("phase", ["train", "test", "score", "predict", "convert", "export", "demo"])
def test_phase_help_lists_what_the_phase_reads(phase):
    listed = _listed(_help(f"--phase={phase}", "--help"))
    read = _read_by_phase()[phase]
    if phase == "train":  # the run configuration is read as a whole (config_from_flags): every config flag
        from hofam_tf.config_flags import IMAGE_SIZE_FLAG, fields

        read |= {name for _, _, name, _ in fields()} | {IMAGE_SIZE_FLAG}
    assert read <= listed, f"{phase} reads flags its help omits: {sorted(read - listed)}"
    assert listed <= read, f"{phase}'s help lists flags it never reads: {sorted(listed - read)}"


def test_predict_help_is_short_and_helpfull_keeps_everything():
    text = _help("--phase=predict", "--help")
    assert "--median_gate" in text and "--steps" not in text and "--demo_steps" not in text
    assert "decision and post-processing:" in text
    full = _help("--helpfull")
    assert "--steps" in full and "--median_gate" in full and "--demo_steps" in full
    assert "--phase=PHASE --help" in _help("--help")
