"""hofam-tf entry point.

    python main.py --phase=demo                      # synthetic data, small model, a few minutes
    python main.py --phase=train                     # data/tfrecords -> checkpoints/hofam
    python main.py --phase=test --ckpt=checkpoints/hofam   # the run's own test split
    python main.py --phase=predict --input=video.mp4 --output_dir=out   # the shipped release model
    python main.py --phase=train --train_pattern='REC/train-*.tfrecord' --ckpt_dir=checkpoints/run1
    python main.py --phase=test  --ckpt=checkpoints/run1 --test_pattern='REC/test-*.tfrecord' --output_dir=out
    python main.py --phase=score --pred_dir=P --gt_dir=G --output_dir=O [--threshold=T]
    python main.py --phase=predict --input=video.avi --ckpt=checkpoints/run1 --output_dir=out [--method=mog2]
    python main.py --phase=convert --ckpt=.../pix2pix.model-15999 --output_path=hofam.keras
    python main.py --phase=export --ckpt=checkpoints/run1 --output_dir=serving [--format=onnx]
    python main.py --phase=predict --input=video.avi --ckpt=serving --runtime=onnxruntime --output_dir=out

Flags live here only; each phase builds config objects and makes one library call.
Bad input exits with code 2 and one ``error: ...`` line naming the file.
"""
from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# OpenCV and FFmpeg log their own lines for a refused or stalled stream; predict says what is
# wrong in one error: or warning: line
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

from absl import app, flags, logging

from hofam_tf.tasks.baselines import METHODS
from hofam_tf.cli import grouped_help, guarded, parse_flags
from hofam_tf.config import DEFAULT_RECORDS_DIR, DEFAULT_RUN_DIR, RunConfig
from hofam_tf.config_flags import IMAGE_SIZE_FLAG, config_from_flags, define_config_flags, given
from hofam_tf.config_flags import fields as config_fields
from hofam_tf.config_flags import sections as config_sections
from hofam_tf.errors import HOFAMInputError
from hofam_tf.tasks.predict import GATE_MODES, PredictOptions
from hofam_tf.data.flow import DIS_PRESETS
from hofam_tf.model.precision import RUN_PRECISION

FLAGS = flags.FLAGS
# the last sentence of every predict flag whose default a model's best.json may set ("post")
MODEL_CHOICE = " Not given: the model's own choice when its best.json records one, else this default."
flags.DEFINE_enum("phase", "demo", ["train", "test", "score", "demo", "predict", "convert", "export"],  # = PHASES
                  "What to run. convert: TF1 checkpoint -> .keras; export: SavedModel or ONNX for serving.")
# every RunConfig field is a flag (name, default and help from hofam_tf.config): --ngf, --steps,
# --batch_size, --train_pattern, --val_pattern, --taus, --hop_encoding, --precision, --augment, ...
define_config_flags()
flags.DEFINE_string("test_pattern", None, "TFRecord glob(s), comma-separated, for testing (default: the "
                    "test split of the run's own dataset, found through config.json and dataset.json).")
flags.DEFINE_enum("inference_precision", None, ["auto", "float32", "bfloat16"],
                  "test / predict: default auto = bfloat16 on CPUs with AVX512-BF16 or AMX and no GPU, else "
                  "float32. export: default float32 (a serving model must not depend on the exporting CPU); "
                  "bfloat16 or auto only when given.")
flags.DEFINE_string("ckpt_dir", DEFAULT_RUN_DIR, "Run directory for training.")
# test / score / predict
flags.DEFINE_string("ckpt", None, "Run directory, checkpoint prefix, .keras file or TF1 checkpoint.")
flags.DEFINE_string("output_dir", None, "Where test / score / predict / demo outputs go.")
flags.DEFINE_float("threshold", None, "Foreground iff probability >= threshold (15/255 = original). "
                   "Default: the run's validated threshold (best.json), else 0.5; predict chooses each "
                   "video's own threshold by default (--calibrate_frames), and uses this one as given.")
flags.DEFINE_enum("method", "hofam", list(METHODS),
                  "predict: HOFAM, or a classical baseline (OpenCV MOG2 / KNN, thresholded HOP, difference from a "
                  "median of earlier frames).")
flags.DEFINE_string("format", "saved_model", "export: saved_model (SavedModel + .keras), onnx (model.onnx; the onnx "
                    "extra), or both comma-separated.")
flags.DEFINE_enum("runtime", "tf", ["tf", "onnxruntime"],  # = hofam_tf.tasks.runtimes.RUNTIMES
                  "predict: run the model in TensorFlow (any checkpoint), or in ONNX Runtime (--ckpt: an export "
                  "folder made with --format=onnx; the onnx extra).")
flags.DEFINE_enum("flow_preset", PredictOptions.flow_preset, ["run", *DIS_PRESETS],
                  "predict: the DIS preset of the HOP's flows: run (the one the model was trained with, in its "
                  "config.json) or a preset; every other flow setting is the run's. The default costs 43 % of medium "
                  "and scored within 0.005 of it on unseen scenes.")
flags.DEFINE_bool("panels", None, "Write the 4-tile panels (default: on for test, off for predict).")
flags.DEFINE_integer("eval_batch_size", 8, "Batch size for test / predict.")
flags.DEFINE_string("pred_dir", None, "score: folder of predicted masks <sequence>/<name>.png.")
flags.DEFINE_string("gt_dir", None, "score: composites folder or CDnet-style folders.")
flags.DEFINE_string("input", None, "predict: a video file, a folder of frames, a camera index (0) or a "
                    "stream URL (rtsp://, http://, ...).")
flags.DEFINE_bool("overlay_video", True, "predict: write overlay.mp4.")
flags.DEFINE_bool("side_by_side", False, "predict: also write side_by_side.mp4 = [frame | mask | masked frame].")
flags.DEFINE_integer("video_max_side", PredictOptions.video_max_side,
                     "predict: the videos are previews: frames whose longer side exceeds this many pixels are scaled "
                     "down to it before encoding (0: native size). The masks are always native.")
flags.DEFINE_integer("max_frames", 0, "predict: stop after N frames per sequence (0: all); for live sources.")
flags.DEFINE_string("roi", None, "predict: region-of-interest mask image (white = watch); default: the input "
                    "folder's own ROI.bmp when it has one.")
flags.DEFINE_enum("naming", "frame", ["frame", "cdnet"], "predict: mask names <frame id>.png, or CDnet's binNNNNNN.png.")
flags.DEFINE_string("post", "none", "predict: post-filter of the binary mask: none, or medianK (e.g. median5).")
flags.DEFINE_integer("calibrate_frames", PredictOptions.calibrate_frames,
                     "predict: scene-adaptive threshold: choose each video's threshold on its first N frames, where "
                     "HOFAM's masks agree best with the median-background rule (no labels). 0: off, the run's "
                     "validated threshold; a given --threshold also turns it off unless this flag is given too." + MODEL_CHOICE)
flags.DEFINE_float("calibrate_range", PredictOptions.calibrate_range,
                   "predict: bound of the scene-adaptive threshold: only thresholds whose odds lie within this "
                   "factor of the validated threshold's either way (e.g. 10: 0.95 may move to 0.66-0.99). 0: "
                   "any." + MODEL_CHOICE)
flags.DEFINE_float("median_gate", PredictOptions.median_gate,
                   "predict: keep a HOFAM mask's pixel only within this radius (tile pixels, scaled to the frame) of "
                   "a pixel the median-background rule marks changed: trims flow halos (0: off)." + MODEL_CHOICE)
flags.DEFINE_enum("gate_mode", PredictOptions.gate_mode, list(GATE_MODES),
                  "predict: how the median gate trims the mask: pixel (its pixels near the rule's changes), fill "
                  "(also the pixels those enclose: no hollow objects), components (each connected component kept "
                  "whole when a share of it is near the rule's changes, else dropped)." + MODEL_CHOICE)
flags.DEFINE_bool("gate_fill", False, "predict: the same as --gate_mode=fill.")
flags.DEFINE_float("hysteresis", PredictOptions.hysteresis,
                   "predict: hysteresis thresholding: pixels at or above the threshold seed objects, and each "
                   "connected region whose odds are at most this factor below the threshold's and that holds a seed "
                   "is kept whole (e.g. 10: threshold 0.99 extends objects down to 0.91). 0: off." + MODEL_CHOICE)
flags.DEFINE_integer("adapt_steps", PredictOptions.adapt_steps,
                     "predict: scene adaptation: this many updates of the model on each video's first "
                     "--adapt_frames frames, from labels it makes itself where its mask and the median-background "
                     "rule agree, before any mask is written (about 0.5 s an update at width 8 on 2 CPU cores). "
                     "0: off." + MODEL_CHOICE)
flags.DEFINE_integer("adapt_frames", PredictOptions.adapt_frames,
                     "predict: how many of each video's first frames scene adaptation (--adapt_steps) learns from.")
flags.DEFINE_integer("adapt_rounds", PredictOptions.adapt_rounds,
                     "predict: scene adaptation's updates split into this many rounds, each on labels made afresh by "
                     "the model as the previous round left it. 1: every label from the checkpoint's model.")
flags.DEFINE_float("adapt_min_recall", PredictOptions.adapt_min_recall,
                   "predict: undo scene adaptation on a video when the adapted model marks less than this share of "
                   "the foreground it was taught (or it was taught none). 0: always keep it.")
flags.DEFINE_integer("reconnect", PredictOptions.reconnect,
                     "predict: reconnection attempts when a camera or stream drops or stalls (waits doubling from "
                     "--reconnect_backoff up to 30 s; frames are numbered on without a gap). 0: end cleanly where it "
                     "dropped.")
flags.DEFINE_float("reconnect_backoff", PredictOptions.reconnect_backoff,
                   "predict: seconds before the first reconnection attempt (then doubling).")
flags.DEFINE_float("open_timeout", PredictOptions.open_timeout,
                   "predict: seconds to open a stream URL before it is an error.")
flags.DEFINE_float("read_timeout", PredictOptions.read_timeout,
                   "predict: seconds without a frame before a stream counts as dropped.")
flags.DEFINE_string("output_path", None, "convert: the .keras file to write.")
# demo
flags.DEFINE_integer("demo_steps", 400, "demo: training steps.")
flags.DEFINE_string("config", None, "train: a run configuration JSON (e.g. another run's config.json); "
                    "flags given on the command line override its values.")


def _require(*names):
    missing = [n for n in names if not getattr(FLAGS, n)]
    if missing:
        raise HOFAMInputError(f"--phase={FLAGS.phase} needs " + ", ".join(f"--{n}" for n in missing))


def _model_overrides() -> dict:
    """Inference-time options a user may change on a trained model."""
    out = {}
    if FLAGS["hop_channels"].present:
        out["hop_channels"] = FLAGS.hop_channels
    if FLAGS["faithful_tf1"].present:
        out["faithful_tf1"] = FLAGS.faithful_tf1
    return out


def run_config() -> RunConfig:
    """The run configuration: ``--config=run.json`` (a saved config.json, say) or the defaults,
    with every config flag given on the command line on top."""
    return config_from_flags(RunConfig.load(FLAGS.config) if FLAGS.config else None)


def _threshold(ckpt) -> float:
    """--threshold when given, else the run's validated threshold, else 0.5."""
    if FLAGS.threshold is not None:
        return FLAGS.threshold
    if ckpt is None:
        return 0.5
    from hofam_tf.model.checkpoints import stored_threshold

    return stored_threshold(ckpt)


def _default_train_pattern() -> str:
    import glob

    pattern = f"{DEFAULT_RECORDS_DIR}/train-*.tfrecord*"
    if not glob.glob(pattern):
        raise HOFAMInputError(f"{DEFAULT_RECORDS_DIR}: no training records in the default folder; make them "
                              "with python data_prep/merge.py --dataset_dir=DATASET, then python "
                              "data_prep/tfrecord.py (or pass --train_pattern)")
    print(f"training on the default records {pattern}")
    return pattern


def _run_test_pattern(ckpt) -> str:
    """The test split of the dataset a run was trained on: config.json's train_pattern names the
    records folder, whose dataset.json lists the test shards."""
    from pathlib import Path

    from hofam_tf.model.checkpoints import CONFIG_NAME, run_dir_of
    from hofam_tf.data.schema import DATASET_INFO

    run_dir = run_dir_of(ckpt)
    cfg = RunConfig.load(run_dir / CONFIG_NAME)
    folders = {str(Path(p.strip()).parent) for p in cfg.train.train_pattern.split(",") if p.strip()}
    for folder in sorted(folders):
        info_path = Path(folder) / DATASET_INFO
        if info_path.exists():
            shards = json.loads(info_path.read_text())["splits"].get("test", {}).get("shards", [])
            if shards:
                return ",".join(str(Path(folder) / s) for s in shards)
    raise HOFAMInputError(f"{run_dir}: its dataset ({', '.join(sorted(folders)) or 'unknown'}) has no test split; "
                          "pass --test_pattern")


def _summary(metrics: dict) -> str:
    p, c = metrics["paper"], metrics["cdnet"]["average"]
    fmt = lambda v: "n/a" if v is None or v != v else f"{v:.4f}"  # noqa: E731
    return (f"paper: F {fmt(p['f_measure'])}  recall {fmt(p['recall'])}  precision {fmt(p['precision'])}"
            f"  dice {fmt(p['dice'])} | CDnet avg: F {fmt(c['f_measure'])}  PWC {fmt(c['pwc'])}")


def phase_train() -> None:
    _require("ckpt_dir")
    import dataclasses

    # the configuration is checked before TensorFlow is imported: a bad number is refused at once
    cfg = run_config()
    if not cfg.train.train_pattern:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, train_pattern=_default_train_pattern()))
    from hofam_tf.tasks.train import run_train

    result = run_train(cfg, FLAGS.ckpt_dir, explicit_flow=given("flow"))
    print(json.dumps(result, indent=2))
    print(f"run directory: {FLAGS.ckpt_dir}")


def phase_test() -> None:
    _require("ckpt")
    from hofam_tf.model.checkpoints import run_dir_of
    from hofam_tf.tasks.evaluate import run_test

    if not FLAGS.test_pattern:
        FLAGS.test_pattern = _run_test_pattern(FLAGS.ckpt)
        print(f"testing on the run's own test split {FLAGS.test_pattern}")
    if not FLAGS.output_dir:
        FLAGS.output_dir = str(run_dir_of(FLAGS.ckpt) / "test")

    metrics = run_test(FLAGS.ckpt, FLAGS.test_pattern, FLAGS.output_dir, _threshold(FLAGS.ckpt),
                       FLAGS.eval_batch_size, FLAGS.panels is not False, model_overrides=_model_overrides(),
                       precision=FLAGS.inference_precision or RUN_PRECISION)
    print(_summary(metrics))
    print(f"masks, panels, error maps and metrics.json in {FLAGS.output_dir}")


def phase_score() -> None:
    _require("pred_dir", "gt_dir", "output_dir")
    from hofam_tf.tasks.evaluate import run_score

    metrics = run_score(FLAGS.pred_dir, FLAGS.gt_dir, FLAGS.output_dir, _threshold(None))
    if metrics["skipped_sequences"]:
        print(f"skipped (no prediction folder): {', '.join(metrics['skipped_sequences'])}")
    print(_summary(metrics))
    print(f"metrics.json in {FLAGS.output_dir}")


def _post_settings(ckpt) -> dict:
    """Predict's post-processing (``checkpoints.POST_FIELDS``): each flag given wins;
    otherwise the value the model's run chose on its validation scenes (best.json "post"), else the
    flag's default. A --threshold given alone fixes the threshold (no calibration)."""
    from hofam_tf.model.checkpoints import stored_post

    stored = stored_post(ckpt) if ckpt is not None else {}
    flags_now = {"calibrate_frames": FLAGS.calibrate_frames, "median_gate": FLAGS.median_gate,
                 "gate_mode": FLAGS.gate_mode, "hysteresis": FLAGS.hysteresis,
                 "calibrate_range": FLAGS.calibrate_range, "adapt_steps": FLAGS.adapt_steps}
    given = {k: v for k, v in flags_now.items() if FLAGS[k].present}
    if FLAGS.gate_fill:
        if given.get("gate_mode", "fill") != "fill":
            raise HOFAMInputError(f"--gate_fill means --gate_mode=fill, not {FLAGS.gate_mode}: give one of them")
        given["gate_mode"] = "fill"
    post = {k: given.get(k, stored.get(k, v)) for k, v in flags_now.items()}
    if FLAGS.threshold is not None and not FLAGS["calibrate_frames"].present:
        post["calibrate_frames"] = 0
    return post


def phase_predict() -> None:
    _require("input", "output_dir")
    from hofam_tf.tasks.predict import PredictOptions, run_predict

    if FLAGS.method == "hofam" and not FLAGS.ckpt:
        from hofam_tf.model.checkpoints import release_model

        FLAGS.ckpt = release_model()
        print(f"using the release model {FLAGS.ckpt}")
    hofam_ckpt = FLAGS.ckpt if FLAGS.method == "hofam" else None
    opts = PredictOptions(threshold=_threshold(hofam_ckpt),
                          batch_size=FLAGS.eval_batch_size, panels=bool(FLAGS.panels),
                          overlay_video=FLAGS.overlay_video, method=FLAGS.method,
                          max_frames=FLAGS.max_frames, roi=FLAGS.roi, naming=FLAGS.naming, post=FLAGS.post,
                          side_by_side=FLAGS.side_by_side, video_max_side=FLAGS.video_max_side,
                          **_post_settings(hofam_ckpt), reconnect=FLAGS.reconnect,
                          reconnect_backoff=FLAGS.reconnect_backoff, open_timeout=FLAGS.open_timeout,
                          read_timeout=FLAGS.read_timeout, runtime=FLAGS.runtime, flow_preset=FLAGS.flow_preset,
                          adapt_frames=FLAGS.adapt_frames, adapt_rounds=FLAGS.adapt_rounds,
                          adapt_min_recall=FLAGS.adapt_min_recall)
    result = run_predict(FLAGS.input, FLAGS.ckpt, FLAGS.output_dir, opts, _model_overrides(),
                         precision=FLAGS.inference_precision or RUN_PRECISION)
    print(json.dumps(result, indent=2))


def phase_convert() -> None:
    _require("ckpt", "output_path")
    from hofam_tf.model.tf1_import import convert_tf1_checkpoint

    path = convert_tf1_checkpoint(FLAGS.ckpt, FLAGS.output_path, **_model_overrides())
    print(f"wrote {path}")


def phase_export() -> None:
    _require("ckpt", "output_dir")
    from hofam_tf.tasks.export import EXPORT_PRECISION, export_checkpoint, format_arg

    print(json.dumps(export_checkpoint(FLAGS.ckpt, FLAGS.output_dir, FLAGS.inference_precision or EXPORT_PRECISION,
                                       _model_overrides(), format_arg(FLAGS.format)), indent=2))


def phase_demo() -> None:
    from hofam_tf.tasks.demo import run_demo

    out = FLAGS.output_dir or "demo_output"
    result = run_demo(out, steps=FLAGS.demo_steps)
    print(_summary(result["metrics"]))
    print(f"trained model: {result['run_dir']}")
    print(f"test panels (frame | GT | HOP | prediction): {result['test_dir']}/panels")
    print(f"error maps (FP green, FN red): {result['test_dir']}/errors")
    print(f"metrics: {result['test_dir']}/metrics.json")


PHASES = {"train": phase_train, "test": phase_test, "score": phase_score, "predict": phase_predict,
          "convert": phase_convert, "export": phase_export, "demo": phase_demo}


def main(argv):
    logging.set_verbosity(logging.WARNING)  # TF's checkpoint INFO lines would break the progress bars
    if len(argv) > 1:
        raise HOFAMInputError(f"unexpected arguments {argv[1:]}")
    PHASES[FLAGS.phase]()
    return 0


# The flags each phase reads, grouped for its --help (``--helpfull`` lists every flag).
_MODEL_OVERRIDES = ["hop_channels", "faithful_tf1"]
PHASE_FLAGS = {
    "train": {"run": ["ckpt_dir", "config"],
              **{f"{section} (config.json: {section})": [name for _, _, name, _ in config_fields((section,))]
                 + ([IMAGE_SIZE_FLAG] if section == "model" else []) for section in config_sections()}},
    "test": {"what to test": ["ckpt", "test_pattern", "output_dir"],
             "decision": ["threshold"],
             "running the model": ["eval_batch_size", "inference_precision", *_MODEL_OVERRIDES],
             "outputs": ["panels"]},
    "score": {"what to score": ["pred_dir", "gt_dir", "output_dir"], "decision": ["threshold"]},
    "predict": {"input and output": ["input", "output_dir", "ckpt", "method", "max_frames", "roi", "naming"],
                "live sources": ["reconnect", "reconnect_backoff", "open_timeout", "read_timeout"],
                "decision and post-processing": ["threshold", "calibrate_frames", "calibrate_range", "median_gate", "gate_mode", "gate_fill",
                                             "hysteresis", "adapt_steps", "adapt_frames", "adapt_rounds",
                                             "adapt_min_recall", "post"],
                "outputs": ["overlay_video", "side_by_side", "video_max_side", "panels"],
                "running the model": ["runtime", "flow_preset", "eval_batch_size", "inference_precision",
                                      *_MODEL_OVERRIDES]},
    "convert": {"TF1 checkpoint -> .keras": ["ckpt", "output_path", *_MODEL_OVERRIDES]},
    "export": {"checkpoint -> SavedModel + .keras, or ONNX": ["ckpt", "output_dir", "format", "inference_precision",
                                                       *_MODEL_OVERRIDES]},
    "demo": {"demo": ["output_dir", "demo_steps"]},
}


def phase_help(argv: list[str]) -> str:
    """--help: the flags of the phase on the command line, grouped; without --phase, the phases."""
    phase = next((a.split("=", 1)[1] for a in argv[1:] if a.startswith("--phase=")), None)
    if phase is None and "--phase" in argv[1:-1]:
        phase = argv[argv.index("--phase") + 1]
    if phase not in PHASE_FLAGS:
        return (__doc__ + "\nphases: " + ", ".join(PHASE_FLAGS) + " (default demo)\n"
                "python main.py --phase=PHASE --help lists the flags PHASE reads; --helpfull lists every flag.\n")
    return grouped_help(f"python main.py --phase={phase} [flags]   (--helpfull: every flag of every phase)",
                        PHASE_FLAGS[phase])


if __name__ == "__main__":
    app.run(guarded(main), flags_parser=lambda argv: parse_flags(argv, phase_help))
