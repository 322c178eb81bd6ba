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
    python main.py --phase=export --ckpt=checkpoints/run1 --output_dir=serving

Flags live here only; each phase builds config objects and makes one library call.
Bad input exits with code 2 and one ``error: ...`` line naming the file.
"""
from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging

from hofam_tf.cli import guarded, parse_flags, parse_ints
from hofam_tf.config import DEFAULT_RECORDS_DIR, DEFAULT_RUN_DIR, HOP_ENCODINGS, FlowConfig, RunConfig
from hofam_tf.errors import HOFAMInputError

FLAGS = flags.FLAGS
flags.DEFINE_enum("phase", "demo", ["train", "test", "score", "demo", "predict", "convert", "export"],  # = PHASES
                  "What to run. convert: TF1 checkpoint -> .keras; export: SavedModel for serving.")
# data
flags.DEFINE_string("train_pattern", None, "TFRecord glob(s), comma-separated, for training "
                    f"(default {DEFAULT_RECORDS_DIR}/train-*.tfrecord*).")
flags.DEFINE_string("test_pattern", None, "TFRecord glob(s), comma-separated, for testing (default: the "
                    "test split of the run's own dataset, found through config.json and dataset.json).")
# model
flags.DEFINE_integer("ngf", 64, "Base width (the original's gf_dim).")
flags.DEFINE_integer("image_size", 256, "Model input height and width (a multiple of 256).")
flags.DEFINE_bool("faithful_tf1", False, "Reproduce the TF1 code: frozen fusion convs, dropout at test.")
flags.DEFINE_enum("hop_channels", "rgb", ["rgb", "r"], "Feed all HOP channels, or only R (original demo).")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16", "mixed_float16"], "Dtype policy.")
flags.DEFINE_bool("xla", False, "Compile the training step with XLA.")
flags.DEFINE_enum("inference_precision", "auto", ["auto", "float32", "bfloat16"],
                  "test / predict / export: auto = bfloat16 on CPUs with AVX512-BF16 or AMX and no GPU, else float32.")
# loss
flags.DEFINE_enum("loss_mode", "cis", ["cis", "tf1"], "Class-in-scale focal loss, or exactly the TF1 loss.")
flags.DEFINE_float("gamma", 0.0, "Focal exponent.")
flags.DEFINE_bool("ignore_labels", True, "Exclude CDnet 85/170 pixels from the loss.")
# training
flags.DEFINE_integer("steps", 64000, "Optimizer updates.")
flags.DEFINE_integer("batch_size", 1, "Global batch size.")
flags.DEFINE_float("learning_rate", 5e-4, "Adam learning rate.")
flags.DEFINE_float("beta1", 0.95, "Adam beta1.")
flags.DEFINE_float("beta2", 0.999, "Adam beta2.")
flags.DEFINE_float("epsilon", 1e-8, "Adam epsilon.")
flags.DEFINE_integer("shuffle_buffer", 2000, "Examples in the shuffle buffer.")
flags.DEFINE_integer("seed", 12138, "Shuffle seed.")
flags.DEFINE_integer("ckpt_every", 2000, "Checkpoint every N steps.")
flags.DEFINE_integer("keep_ckpts", 5, "Checkpoints kept.")
flags.DEFINE_integer("log_every", 100, "TensorBoard scalars every N steps.")
flags.DEFINE_integer("image_every", 1000, "TensorBoard image panels every N steps (0: never).")
flags.DEFINE_string("val_pattern", None, "TFRecords of held-out scenes: validation F every --val_every "
                    "steps, best checkpoint and threshold kept.")
flags.DEFINE_integer("val_every", 500, "Validate every N steps (with --val_pattern).")
flags.DEFINE_integer("steps_per_loop", 20, "Updates per tf.function call (device-side loop).")
flags.DEFINE_integer("early_stop", 0, "Stop after N validations without improvement (0: never).")
flags.DEFINE_bool("augment", True, "Augment training batches (crops, flips, photometric, HOP gain).")
flags.DEFINE_float("min_crop", 0.6, "Augmentation: smallest crop side, as a fraction of the tile.")
flags.DEFINE_float("hop_gain", 2.0, "Augmentation: HOP gain drawn log-uniformly in [1/g, g].")
flags.DEFINE_string("ckpt_dir", DEFAULT_RUN_DIR, "Run directory for training.")
# flows (saved in the run config; predict computes HOP images with them)
flags.DEFINE_string("taus", "1,5,10", "Frame intervals tau1<tau2<tau3.")
flags.DEFINE_enum("estimator", "dis", ["dis", "farneback"], "Optical flow estimator.")
flags.DEFINE_enum("dis_preset", "balanced", ["balanced", "ultrafast", "fast", "medium"], "OpenCV DIS preset.")
flags.DEFINE_enum("hop_encoding", FlowConfig().encoding, list(HOP_ENCODINGS), "How flow magnitude becomes HOP grey levels.")
# test / score / predict
flags.DEFINE_string("ckpt", None, "Run directory, checkpoint prefix, .keras file or TF1 checkpoint.")
flags.DEFINE_string("output_dir", None, "Where test / score / predict / demo outputs go.")
flags.DEFINE_float("threshold", None, "Foreground iff probability >= threshold (15/255 = original). "
                   "Default: the run's validated threshold (best.json), else 0.5.")
flags.DEFINE_enum("method", "hofam", ["hofam", "mog2", "knn", "hop"],
                  "predict: HOFAM, or a classical baseline (OpenCV MOG2 / KNN, thresholded HOP).")
flags.DEFINE_bool("panels", None, "Write the 4-tile panels (default: on for test, off for predict).")
flags.DEFINE_integer("eval_batch_size", 8, "Batch size for test / predict.")
flags.DEFINE_string("pred_dir", None, "score: folder of predicted masks <sequence>/<name>.png.")
flags.DEFINE_string("gt_dir", None, "score: composites folder or CDnet-style folders.")
flags.DEFINE_string("input", None, "predict: a video file, a folder of frames, a camera index (0) or a "
                    "stream URL (rtsp://, http://, ...).")
flags.DEFINE_bool("overlay_video", True, "predict: write overlay.mp4.")
flags.DEFINE_bool("side_by_side", False, "predict: also write side_by_side.mp4 = [frame | mask | masked frame].")
flags.DEFINE_integer("max_frames", 0, "predict: stop after N frames per sequence (0: all); for live sources.")
flags.DEFINE_string("roi", None, "predict: region-of-interest mask image (white = watch); default: the input "
                    "folder's own ROI.bmp when it has one.")
flags.DEFINE_enum("naming", "frame", ["frame", "cdnet"], "predict: mask names <frame id>.png, or CDnet's binNNNNNN.png.")
flags.DEFINE_string("post", "none", "predict: post-filter of the binary mask: none, or medianK (e.g. median5).")
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
    for name in ("hop_channels",):
        if FLAGS[name].present:
            out[name] = FLAGS[name].value
    if FLAGS["faithful_tf1"].present:
        out["faithful_tf1"] = FLAGS.faithful_tf1
    return out


# flag -> (config section, field, converter): the one table between flags and RunConfig
FIELD_FLAGS = {
    "ngf": ("model", "ngf", None), "image_size": ("model", "height", None),
    "faithful_tf1": ("model", "faithful_tf1", None), "hop_channels": ("model", "hop_channels", None),
    "precision": ("model", "dtype", None),
    "loss_mode": ("loss", "mode", None), "gamma": ("loss", "gamma", None),
    "ignore_labels": ("loss", "ignore_labels", None),
    "train_pattern": ("train", "train_pattern", None), "steps": ("train", "steps", None),
    "batch_size": ("train", "batch_size", None), "learning_rate": ("train", "learning_rate", None),
    "beta1": ("train", "beta1", None), "beta2": ("train", "beta2", None), "epsilon": ("train", "epsilon", None),
    "shuffle_buffer": ("train", "shuffle_buffer", None), "seed": ("train", "seed", None),
    "ckpt_every": ("train", "ckpt_every", None), "keep_ckpts": ("train", "keep_ckpts", None),
    "log_every": ("train", "log_every", None), "image_every": ("train", "image_every", None),
    "xla": ("train", "xla", None), "val_pattern": ("train", "val_pattern", None),
    "val_every": ("train", "val_every", None), "early_stop": ("train", "early_stop", None),
    "steps_per_loop": ("train", "steps_per_loop", None),
    "taus": ("flow", "taus", lambda v: parse_ints(v, "taus")), "estimator": ("flow", "estimator", None),
    "dis_preset": ("flow", "dis_preset", None), "hop_encoding": ("flow", "encoding", None),
    "augment": ("augment", "enabled", None), "min_crop": ("augment", "min_crop", None),
    "hop_gain": ("augment", "hop_gain", None),
}


def run_config() -> RunConfig:
    """The run configuration: ``--config=run.json`` (a saved config.json, say) or the defaults,
    with every flag the user gave on top (without --config, all flags apply)."""
    data = RunConfig.load(FLAGS.config).to_dict() if FLAGS.config else RunConfig().to_dict()
    for flag, (section, field, convert) in FIELD_FLAGS.items():
        if FLAGS.config and not FLAGS[flag].present:
            continue
        value = FLAGS[flag].value
        if value is None:
            continue
        data[section][field] = convert(value) if convert else value
        if flag == "image_size":
            data["model"]["width"] = value
    return RunConfig.from_dict(data)


def _threshold(ckpt) -> float:
    """--threshold when given, else the run's validated threshold, else 0.5."""
    if FLAGS.threshold is not None:
        return FLAGS.threshold
    if ckpt is None:
        return 0.5
    from hofam_tf.checkpoints import stored_threshold

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

    from hofam_tf.checkpoints import CONFIG_NAME, run_dir_of
    from hofam_tf.schema import DATASET_INFO

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
    if not FLAGS.train_pattern:
        FLAGS.train_pattern = _default_train_pattern()
    from hofam_tf.train import run_train

    explicit = frozenset(field for flag, (section, field, _) in FIELD_FLAGS.items()
                         if section == "flow" and FLAGS[flag].present)
    result = run_train(run_config(), FLAGS.ckpt_dir, explicit_flow=explicit)
    print(json.dumps(result, indent=2))
    print(f"run directory: {FLAGS.ckpt_dir}")


def phase_test() -> None:
    _require("ckpt")
    from hofam_tf.checkpoints import run_dir_of
    from hofam_tf.evaluate import run_test

    if not FLAGS.test_pattern:
        FLAGS.test_pattern = _run_test_pattern(FLAGS.ckpt)
        print(f"testing on the run's own test split {FLAGS.test_pattern}")
    if not FLAGS.output_dir:
        FLAGS.output_dir = str(run_dir_of(FLAGS.ckpt) / "test")

    metrics = run_test(FLAGS.ckpt, FLAGS.test_pattern, FLAGS.output_dir, _threshold(FLAGS.ckpt),
                       FLAGS.eval_batch_size, FLAGS.panels is not False, model_overrides=_model_overrides(),
                       precision=FLAGS.inference_precision)
    print(_summary(metrics))
    print(f"masks, panels, error maps and metrics.json in {FLAGS.output_dir}")


def phase_score() -> None:
    _require("pred_dir", "gt_dir", "output_dir")
    from hofam_tf.evaluate import run_score

    metrics = run_score(FLAGS.pred_dir, FLAGS.gt_dir, FLAGS.output_dir, _threshold(None))
    if metrics["skipped_sequences"]:
        print(f"skipped (no prediction folder): {', '.join(metrics['skipped_sequences'])}")
    print(_summary(metrics))
    print(f"metrics.json in {FLAGS.output_dir}")


def phase_predict() -> None:
    _require("input", "output_dir")
    from hofam_tf.predict import PredictOptions, run_predict

    if FLAGS.method == "hofam" and not FLAGS.ckpt:
        from hofam_tf.checkpoints import release_model

        FLAGS.ckpt = release_model()
        print(f"using the release model {FLAGS.ckpt}")
    opts = PredictOptions(threshold=_threshold(FLAGS.ckpt if FLAGS.method == "hofam" else None),
                          batch_size=FLAGS.eval_batch_size, panels=bool(FLAGS.panels),
                          overlay_video=FLAGS.overlay_video, method=FLAGS.method,
                          max_frames=FLAGS.max_frames, roi=FLAGS.roi, naming=FLAGS.naming, post=FLAGS.post,
                          side_by_side=FLAGS.side_by_side)
    result = run_predict(FLAGS.input, FLAGS.ckpt, FLAGS.output_dir, opts, _model_overrides(),
                         precision=FLAGS.inference_precision)
    print(json.dumps(result, indent=2))


def phase_convert() -> None:
    _require("ckpt", "output_path")
    from hofam_tf.tf1_import import convert_tf1_checkpoint

    path = convert_tf1_checkpoint(FLAGS.ckpt, FLAGS.output_path, **_model_overrides())
    print(f"wrote {path}")


def phase_export() -> None:
    _require("ckpt", "output_dir")
    from hofam_tf.checkpoints import load_for_inference
    from hofam_tf.export import export_serving

    model, _ = load_for_inference(FLAGS.ckpt, _model_overrides(), FLAGS.inference_precision)
    print(json.dumps(export_serving(model, FLAGS.output_dir), indent=2))


def phase_demo() -> None:
    from hofam_tf.demo import run_demo

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


if __name__ == "__main__":
    app.run(guarded(main), flags_parser=parse_flags)
