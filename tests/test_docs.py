"""The docs check: the README is short and maps the docs, and every command in README.md and
docs/*.md names a program that exists and flags it accepts.

- ``python main.py ...``: absl parses the command's flags (unknown flags and bad values fail), and
  each flag belongs to the phase (``main.PHASE_FLAGS``, the lists ``--phase=X --help`` prints).
- ``python data_prep/X.py``, ``python -m bench.X``, ``python docs/X.py``: every flag the command
  gives appears in the tool's own ``--help``.
- ``pip install -e ".[extras]"``: the extras exist in setup.py; ``pytest -m EXPR``: the markers exist.
- ``python docs/make_figure.py`` runs for real (the README's picture comes from it), and so do the
  README's "segment your own video" and score commands, placeholders replaced by the real samples.
"""
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TOPICS = ("data", "flows", "training", "quality", "prediction", "performance", "faithfulness", "serving")


def commands() -> list[tuple[str, list[str]]]:
    """(file name, argv) of every command line in the ```bash blocks (continuations joined, env
    assignments and trailing comments dropped, ``[--opt]`` brackets opened)."""
    found = []
    for path in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                for part in line.split("&&"):
                    argv = shlex.split(re.sub(r"\[(--[^\]]*)\]", r"\1", part), comments=True)
                    while argv and re.fullmatch(r"[A-Z_]+=.*", argv[0]):
                        argv.pop(0)
                    if argv:
                        found.append((path.name, argv))
    return found


def _flag_names(argv: list[str]) -> list[str]:
    return [a[2:].split("=", 1)[0] for a in argv if a.startswith("--") and len(a) > 2]


def _help(cmd: list[str]) -> str:
    proc = subprocess.run([sys.executable, *cmd, "--help"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, f"{' '.join(cmd)} --help failed: {proc.stderr[-1500:]}"
    return proc.stdout + proc.stderr


def test_readme_is_short_and_maps_every_topic():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for topic in TOPICS:
        assert (ROOT / "docs" / f"{topic}.md").is_file(), topic
        assert f"(docs/{topic}.md)" in readme, f"README does not link docs/{topic}.md"
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).exists(), link


def test_no_paragraph_of_the_readme_is_repeated_in_a_doc():
    def paragraphs(text):
        return {re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n\s*\n", text)
                if len(p) > 120 and not p.lstrip().startswith(("|", "```"))}

    readme = paragraphs((ROOT / "README.md").read_text())
    for doc in DOCS[1:]:
        assert not readme & paragraphs(doc.read_text()), doc.name


def test_the_scan_finds_the_commands():
    found = commands()
    programs = {argv[1] if argv[0] == "python" else argv[0] for _, argv in found}
    assert {"main.py", "data_prep/merge.py", "-m", "install"} <= programs | {argv[1] for _, argv in found}
    assert len(found) >= 30


def test_main_commands_parse_and_use_their_phases_flags():
    mains = [argv[2:] for _, argv in commands() if argv[:2] == ["python", "main.py"]]
    assert len(mains) >= 15
    code = f"""
import json, sys
sys.argv = ["main.py"]
sys.path.insert(0, {str(ROOT)!r})
import main
from absl import flags
errors = []
for args in json.loads(sys.stdin.read()):
    flags.FLAGS.unparse_flags()
    try:
        flags.FLAGS(["main.py", *args])
    except flags.Error as err:
        errors.append(f"{{args}}: {{err}}")
        continue
    phase = flags.FLAGS.phase
    allowed = {{n for names in main.PHASE_FLAGS[phase].values() for n in names}} | {{"phase"}}
    for a in args:
        name = a[2:].split("=", 1)[0]
        name = name[2:] if name.startswith("no") and name[2:] in allowed else name
        if name not in allowed:
            errors.append(f"{{args}}: --{{name}} is not a flag of --phase={{phase}}")
print(json.dumps(errors))
"""
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(mains), capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_the_main_check_catches_a_wrong_flag():
    """The check above can fail: a training flag on predict is refused."""
    sys.path.insert(0, str(ROOT))
    try:
        import main
    finally:
        sys.path.remove(str(ROOT))
    predict = {n for names in main.PHASE_FLAGS["predict"].values() for n in names}
    assert "steps" not in predict and "median_gate" in predict


def test_tool_commands_use_flags_their_help_lists():
    tools: dict[tuple, set] = {}
    for _, argv in commands():
        if argv[0] != "python" or argv[1] in ("main.py",) or argv[1:3] == ["-m", "pytest"]:
            continue
        cmd = tuple(argv[1:3]) if argv[1] == "-m" else (argv[1],)
        tools.setdefault(cmd, set()).update(_flag_names(argv))
    assert ("data_prep/merge.py",) in tools and ("-m", "bench.bench_quality") in tools
    for cmd, names in tools.items():
        if cmd == ("-m", "bench.bench_model_jax"):  # needs JAX, absent from the CPU environment
            continue
        text = _help(list(cmd))
        for name in names:
            assert re.search(rf"--(\[no\])?{re.escape(name)}\b", text), f"{' '.join(cmd)}: --{name} not in its --help"


def test_install_and_pytest_commands_name_what_exists():
    setup = (ROOT / "setup.py").read_text()
    markers = set(re.findall(r"^\s+(\w+):", (ROOT / "pytest.ini").read_text(), flags=re.M))
    seen = 0
    for _, argv in commands():
        if argv[:2] == ["pip", "install"]:
            extras = re.findall(r"\[([^\]]+)\]", " ".join(argv))
            assert extras, argv
            for name in ",".join(extras).split(","):
                assert f'"{name}":' in setup, f"setup.py has no extra {name}"
            seen += 1
        if argv[1:3] == ["-m", "pytest"] and "-m" in argv[3:]:
            expr = argv[argv.index("-m", 3) + 1]
            assert set(re.findall(r"\w+", expr)) - {"not", "and", "or"} <= markers
            seen += 1
    assert seen >= 2


def test_ci_runs_the_readmes_full_test_command_after_the_readmes_install():
    """.ci/run ends with the README's full test command, word for word, and installs the package
    with the extras the README's pip install names."""
    readme = [argv for name, argv in commands() if name == "README.md"]
    tests = [a for a in readme if a[1:3] == ["-m", "pytest"]]
    full = [a for a in tests if "-m" not in a[3:]]
    assert len(full) == 1 and len(tests) == 2, tests
    ci = [shlex.split(line, comments=True) for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    ci = [a for a in ci if a]
    assert ci[-1] == full[0], (ci[-1], full[0])
    install = next(a for a in ci if "install" in a)
    assert install[:3] == ["python", "-m", "pip"] and any(
        a[:2] == ["pip", "install"] and a[-1] == install[-1] for a in readme), install


@pytest.mark.slow
def test_make_figure_runs(tmp_path, shared_data):
    out = tmp_path / "figure.png"
    proc = subprocess.run([sys.executable, "docs/make_figure.py", f"--input={shared_data}/cdnet2014/baseline/highway",
                           "--frame=12", f"--out={out}"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from PIL import Image

    img = Image.open(out)
    assert img.size[1] == 256 and img.size[0] > 4 * 256


@pytest.mark.slow
def test_readme_user_commands_run_on_real_footage(tmp_path, shared_data):
    """The README's "segment your own video" command, and its score command on the masks it
    wrote, run as written with the placeholders replaced: my_video.mp4 by a real clip (CDnet's
    highway, written here as a video), out and score by temporary folders, /data/cdnet2014 by the
    real samples."""
    import cv2

    readme = [argv for name, argv in commands() if name == "README.md" and argv[:2] == ["python", "main.py"]]
    own = next(a for a in readme if "--phase=predict" in a)
    score = next(a for a in readme if "--phase=score" in a)
    frames = sorted((shared_data / "cdnet2014" / "baseline" / "highway" / "input").glob("*.jpg"))
    video = tmp_path / "highway.avi"
    first = cv2.imread(str(frames[0]))
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, first.shape[1::-1])
    for p in frames:
        writer.write(cv2.imread(str(p)))
    writer.release()
    swap = {"my_video.mp4": str(video), "out": str(tmp_path / "out"), "score": str(tmp_path / "score"),
            "/data/cdnet2014": str(shared_data / "cdnet2014")}

    def concrete(argv):
        out = []
        for a in argv:
            key, eq, value = a.partition("=")
            out.append(f"{key}={swap.get(value, value)}" if eq and key != "--phase" else a)
        return out

    proc = subprocess.run([sys.executable, *concrete(own)[1:], "--max_frames=30"], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list((tmp_path / "out" / "highway" / "masks").iterdir())) == 30
    assert (tmp_path / "out" / "highway" / "overlay.mp4").is_file()
    # score: predict's masks of the real CDnet folders (named as CDnet names them), then the command
    proc = subprocess.run([sys.executable, "main.py", "--phase=predict", f"--input={shared_data / 'cdnet2014'}",
                           f"--output_dir={tmp_path / 'out'}", "--naming=cdnet", "--nooverlay_video"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = subprocess.run([sys.executable, *concrete(score)[1:]], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "score" / "metrics.json").read_text())
    assert set(metrics["cdnet"]["per_sequence"]) == {"baseline_highway", "baseline_office", "baseline_pedestrians"}
    assert metrics["skipped_sequences"] == [] and metrics["images"] == 3 * 51


def test_the_package_version_is_the_newest_changelog_entry():
    """One version: hofam_tf.__version__ (setup.py reads it) is the README changelog's newest entry."""
    from importlib.metadata import version

    import hofam_tf

    entries = re.findall(r"^- \*\*(\d+\.\d+)\.\*\*", (ROOT / "README.md").read_text(), flags=re.M)
    assert entries and hofam_tf.__version__ == f"{entries[0]}.0"
    assert version("hofam-tf") == hofam_tf.__version__
