"""Cross-validation by singer: the folds, and benchmarks/cross_validate.py end to end."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from stream_sep.errors import UserError
from stream_sep.evaluation import datasets
from tests.helpers import write_mir1k_like
from tests.helpers import write_stems_song as write_song
from train import runs

MIR1K_SINGERS = [
    "Ani", "Kenshin", "abjones", "amy", "bobon", "bug",
    "fdps", "heycat", "jmzen", "stool", "tammy", "yifen",
]  # fmt: skip
REPO = Path(__file__).resolve().parents[1]


def load_script():
    from benchmarks import cross_validate

    return cross_validate


@pytest.mark.parametrize("held_out", range(1, len(MIR1K_SINGERS)))
def test_no_singer_is_ever_on_both_sides(held_out):
    folds = datasets.singer_folds(MIR1K_SINGERS, held_out)
    assert len(folds) == -(-len(MIR1K_SINGERS) // held_out)
    for fold in folds:
        assert not set(fold.held_out) & set(fold.training), fold
        assert set(fold.held_out) | set(fold.training) == set(MIR1K_SINGERS), fold
        assert fold.training, fold
    held = [singer for fold in folds for singer in fold.held_out]
    assert sorted(held) == sorted(MIR1K_SINGERS)  # each singer held out exactly once
    assert [len(fold.held_out) for fold in folds[:-1]] == [held_out] * (len(folds) - 1)


def test_six_rotating_pairs_for_mir1k_in_name_order():
    folds = datasets.singer_folds(reversed(MIR1K_SINGERS + ["amy"]), 2)  # order, repeats: no matter
    assert [fold.held_out for fold in folds] == [
        ("abjones", "amy"),
        ("Ani", "bobon"),
        ("bug", "fdps"),
        ("heycat", "jmzen"),
        ("Kenshin", "stool"),
        ("tammy", "yifen"),
    ]
    assert [fold.index for fold in folds] == list(range(6))


@pytest.mark.parametrize("held_out", [0, 12, -1, 1.5, True])
def test_impossible_folds_are_one_line(held_out):
    with pytest.raises(
        UserError, match="singers held out per fold must be an integer from 1 to 11"
    ):
        datasets.singer_folds(MIR1K_SINGERS, held_out)


def test_the_singers_of_a_folder(tmp_path):
    write_mir1k_like(tmp_path / "data", ["bob", "Al", "amy"], clips=2, seconds=0.2)
    assert datasets.mir1k_singers(tmp_path / "data") == ["Al", "amy", "bob"]


def test_each_fold_trains_without_its_singers_and_with_a_schedule(tmp_path):
    script = load_script()
    fold = datasets.singer_folds(MIR1K_SINGERS, 2)[1]
    argv, total = script.train_command(tmp_path, fold, 1000, tmp_path / "runs" / "f1", "")
    given = argv[3:]
    assert given[given.index("--val-singers") + 1] == "Ani,bobon"
    assert given[given.index("--epochs") + 1] == "7" and total == 1050
    # a schedule turns the plateau rule (which reads the validation loss) off
    assert "--warmup-steps" in given and "--lr-decay-steps" in given
    assert given[given.index("--lr-decay-start") + 1] == "787"


def test_only_folds_chooses_folds_by_number(tmp_path):
    script = load_script()
    folds = datasets.singer_folds(MIR1K_SINGERS, 2)

    def chosen(*options: str) -> list[tuple[str, ...]]:
        args = script.parse_args(["--data", str(tmp_path), *options])
        return [fold.held_out for fold in script.chosen_folds(args, folds)]

    assert chosen("--only-folds", "3,2,3") == [("bug", "fdps"), ("heycat", "jmzen")]
    assert chosen("--folds", "2") == [("abjones", "amy"), ("Ani", "bobon")]
    assert len(chosen()) == 6
    with pytest.raises(UserError, match="--only-folds 6,9: there are 6 folds .0 to 5."):
        chosen("--only-folds", "1,6,9")
    for bad in ("two", "1,,2", "-1"):
        with pytest.raises(UserError, match="--only-folds takes fold numbers"):
            chosen("--only-folds", bad)
    with pytest.raises(UserError, match="--folds and --only-folds are two ways"):
        chosen("--folds", "2", "--only-folds", "1")


def earlier_report(data: Path, folds: dict[int, tuple[str, str]], sdr: float = 7.0) -> dict:
    """A report of cross_validate.py --json (default recipe, steps and settings) whose folds
    ``{index: held-out singers}`` scored every clip of ``data`` at ``sdr`` dB."""
    from stream_sep import evaluation

    options = evaluation.engine_options(True)
    rows = []
    for index, held_out in folds.items():
        names = [ref.name for ref in datasets.find_clips(data, "mir1k", None, list(held_out))]
        cell = {"mean": sdr, "median": sdr, "clips": len(names)}
        rows.append({
            "fold": index, "held_out": list(held_out), "run": f"/elsewhere/fold-{index}",
            "steps": 5550, "train_seconds": 11000.0, "export_seconds": 40.0,
            "evaluate_seconds": 200.0, "scored_before": False, "scored_at": "0" * 40,
            "vocals_sdr": cell, "by_singer": {name: cell for name in held_out},
            "clips": [{"name": name, "seconds": 1.5, "vocals_sdr": sdr} for name in names],
        })  # fmt: skip
    script = load_script()
    return {
        "data": str(data), "steps": 5550, "every": 1, "held_out": 2, "recipe": script.RECIPE,
        "evaluation": {
            "hop_seconds": options["hop"], "lookahead_seconds": options["lookahead"],
            "crossfade_seconds": options["crossfade"], "latency_seconds": 1.3,
            "algorithmic_latency_seconds": 0.75, "postfilter": options["postfilter"],
            "high_band_voice_removal": 0.0, "denoise": False,
        },
        "folds_planned": 6, "complete": False, "folds": rows,
    }  # fmt: skip


def test_an_included_reports_folds_are_reported_not_run_again(tmp_path):
    """Folds measured elsewhere (another machine keeps nothing) come into this run's report
    as they were: nothing is trained, exported or scored for them."""
    data = tmp_path / "mir1k"
    write_mir1k_like(data, ["ann", "bo", "cy", "di", "ed", "fu"], clips=2, seconds=0.5)
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps(earlier_report(data, {0: ("ann", "bo"), 2: ("ed", "fu")})))
    script = load_script()
    work, out = tmp_path / "cv", tmp_path / "cv.json"
    argv = ["--data", str(data), "--work", str(work), "--include", str(earlier)]
    report = script.run([*argv, "--only-folds", "2", "--json", str(out), "--md", str(out) + ".md"])
    assert not work.exists()  # no fold was run here
    assert [row["fold"] for row in report["folds"]] == [0, 2]
    assert {row["included_from"] for row in report["folds"]} == {str(earlier)}
    assert report["folds"][1]["held_out"] == ["ed", "fu"] and report["clips"] == 8
    assert report["over_folds"]["mean"] == pytest.approx(7.0)
    assert list(report["by_singer"]) == ["ann", "bo", "ed", "fu"]
    assert report["complete"] is True and report["folds_in_split"] == 3
    assert report["evaluation"] == json.loads(earlier.read_text())["evaluation"]
    written = json.loads(out.read_text())
    assert written.pop("run")["command"].startswith("python -m benchmarks cross_validate --data")
    assert written == report
    markdown = (tmp_path / "cv.json.md").read_text()
    assert "2 of the 3 folds" in markdown and "Mean over these folds **7.00 dB**" in markdown

    # included again (a report of included folds keeps where each fold came from)
    again = script.run(["--data", str(data), "--work", str(work), "--include", str(out),
                        "--only-folds", "0"])  # fmt: skip
    assert [row["included_from"] for row in again["folds"]] == [str(earlier)] * 2


@pytest.mark.parametrize(
    ("change", "options", "message"),
    [
        ({"steps": 600}, [], "measured with steps 600, this run with 5550"),
        ({}, ["--steps", "600"], "measured with steps 5550, this run with 600"),
        ({}, ["--train-args=--seed 3"], "measured with recipe .*--seed 21'"),
        ({"every": 2}, [], "measured with every 2, this run with 1"),
        ({}, ["--postfilter", "none"], "with variant options None, this run with .*none"),
        ({}, ["--hop", "0.25"], "scored with --hop 0.5 s, this run with 0.25 s"),
        ({"evaluation": {"postfilter": "none"}}, [], "scored with postfilter 'none'"),
        ({"fold 0 held out": ["cy", "di"]}, [], "fold 0 held out cy, di, this split's fold 0 "),
        ({"fold 0 clips": 1}, [], "its fold 0 scored 1 clips, not the 4 of ann, bo in "),
    ],
)
def test_an_included_report_of_another_measure_is_one_line(tmp_path, change, options, message):
    data = tmp_path / "mir1k"
    write_mir1k_like(data, ["ann", "bo", "cy", "di"], clips=2, seconds=0.5)
    report = earlier_report(data, {0: ("ann", "bo")})
    row = report["folds"][0]
    for key, value in change.items():
        if key == "evaluation":
            report["evaluation"].update(value)
        elif key == "fold 0 held out":
            row["held_out"] = value
        elif key == "fold 0 clips":
            row["clips"] = row["clips"][:value]
        else:
            report[key] = value
    earlier, out = tmp_path / "earlier.json", tmp_path / "cv.json"
    earlier.write_text(json.dumps(report))
    argv = ["--data", str(data), "--work", str(tmp_path / "cv"), "--include", str(earlier)]
    with pytest.raises(UserError, match=message) as raised:
        load_script().run([*argv, *options, "--json", str(out)])
    assert "\n" not in str(raised.value)
    assert not out.exists() and not (tmp_path / "cv").exists()  # nothing written, nothing run


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "cannot read it"),
        ("{not json", "is not JSON"),
        ('{"folds": []}', "is not a report of cross_validate.py --json"),
        ("[1, 2]", "is not a report of cross_validate.py --json"),
        (
            '{"recipe": "", "steps": 1, "every": 1, "held_out": 2, "evaluation": {}, "folds": []}',
            "is not a report of cross_validate.py --json",
        ),
        ("REPORT WITHOUT CLIPS", "is not a report of cross_validate.py --json"),
    ],
)
def test_an_include_that_is_not_a_report_is_one_line(tmp_path, capsys, text, message):
    data = tmp_path / "mir1k"
    write_mir1k_like(data, ["ann", "bo", "cy", "di"], clips=1, seconds=0.5)
    path = tmp_path / "earlier.json"
    if text == "REPORT WITHOUT CLIPS":
        report = earlier_report(data, {0: ("ann", "bo")})
        del report["folds"][0]["clips"]
        text = json.dumps(report)
    if text is not None:
        path.write_text(text)
    work = tmp_path / "cv"
    code = load_script().main(["--data", str(data), "--work", str(work), "--include", str(path)])
    error = capsys.readouterr().err
    assert code == 2 and not work.exists()
    assert error == f"cross_validate.py: error: --include {path} {message}\n" or (
        error.startswith(f"cross_validate.py: error: --include {path}: {message}")
        and error.count("\n") == 1
    )


def test_train_args_may_start_with_a_dash_and_bad_options_are_one_line(tmp_path, capsys):
    script = load_script()
    base = ["--data", str(tmp_path)]
    for argv in (["--train-args", "--vocal-pitch-shift=-7,2,0.5"],
                 ["--train-args=--vocal-pitch-shift=-7,2,0.5"]):  # fmt: skip
        assert script.parse_args([*base, *argv]).train_args == "--vocal-pitch-shift=-7,2,0.5"
    args = script.parse_args([*base, "--train-args", "--seed 3", "--steps", "50"])
    assert (args.train_args, args.steps) == ("--seed 3", 50)
    assert script.main([*base, "--steps", "many"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("cross_validate.py: error: argument --steps: invalid int value")
    assert error.count("\n") == 1


@pytest.mark.slow
def test_a_smoke_run_trains_exports_and_scores_each_fold(tmp_path):
    """Two steps of a very small model on generated clips: the whole chain, not the quality."""
    data = tmp_path / "mir1k"
    write_mir1k_like(data, ["ann", "bo", "cy", "di"], clips=2, seconds=1.5)
    script = load_script()
    started = time.perf_counter()
    argv = [
        "--data", str(data), "--steps", "2", "--work", str(tmp_path / "cv"),
        "--hop", "0.1", "--lookahead", "0.05", "--json", str(tmp_path / "cv.json"),
        "--postfilter", "none",
        "--train-args",
        "--window-samples 7680 --n-scales 1 --block-size 1 --batch-size 2 --val-examples 2",
    ]  # fmt: skip
    songs = tmp_path / "songs"
    write_song(songs / "alpha", 2.0, seed=1)
    write_song(songs / "beta", 1.5, seed=2, parts=True)
    report = script.run(
        [*argv, "--folds", "1", "--songs", str(songs), "--md", str(tmp_path / "cv.md")]
    )
    seconds = time.perf_counter() - started
    (fold,) = report["folds"]
    # each fold's model also scored on the real songs (the stems folder)
    real = fold["real_songs"]
    assert sorted(real["songs"]) == ["alpha", "beta"]
    assert real["vocals"] == pytest.approx(
        sum(song["vocals"] for song in real["songs"].values()) / 2
    )
    assert "Each fold's model on the real songs" in (tmp_path / "cv.md").read_text()
    assert fold["held_out"] == ["ann", "bo"]
    assert {clip["name"].split("_")[0] for clip in fold["clips"]} == {"ann", "bo"}
    assert fold["vocals_sdr"]["clips"] == 4
    assert report["over_folds"]["folds"] == 1
    assert json.loads((tmp_path / "cv.json").read_text())["clips"] == 4
    # the defaults (the Wiener post-filter) scored, then the same clips without it
    assert report["evaluation"]["postfilter"] == "wiener"
    post = fold["variant"]
    assert post["name"] == "--postfilter none" and post["vocals_sdr"]["clips"] == 4
    assert post["gain"] != 0  # a different estimate: the filter changed the samples
    assert post["gain"] == pytest.approx(post["vocals_sdr"]["mean"] - fold["vocals_sdr"]["mean"])
    assert 0 <= post["clips_better"] <= 4
    assert report["variant"]["gain_over_folds"]["mean"] == pytest.approx(post["gain"])
    assert report["variant"]["options"] == {"postfilter": "none"}
    config = json.loads((Path(fold["run"]) / "config.json").read_text())
    assert config["data"]["val_singers"] == ["ann", "bo"]
    assert config["training"]["epochs"] * config["training"]["steps_per_epoch"] == 2
    print(f"smoke run: {seconds:.0f} s")

    # the same measure in a fresh work folder (as on another machine): fold 0 comes from the
    # first run's report, only fold 1 is trained, and its model's plan is the report's
    elsewhere = tmp_path / "cv-elsewhere"
    both = script.run([*argv, "--work", str(elsewhere), "--json", str(tmp_path / "both.json"),
                       "--include", str(tmp_path / "cv.json"), "--folds", "2"])  # fmt: skip
    included, trained = both["folds"]
    assert included["included_from"] == str(tmp_path / "cv.json")
    assert clip_sdrs(included) == clip_sdrs(fold) and included["run"] == fold["run"]
    assert "included_from" not in trained and trained["held_out"] == ["cy", "di"]
    assert Path(trained["run"]).parent == elsewhere and trained["export_seconds"] is not None
    assert sorted(path.name for path in elsewhere.iterdir() if path.is_dir()) == ["fold-1-cy-di"]
    assert both["complete"] is True and both["evaluation"] == report["evaluation"]
    assert both["over_folds"]["mean"] == pytest.approx(
        (fold["vocals_sdr"]["mean"] + trained["vocals_sdr"]["mean"]) / 2
    )

    assert fold["scored_before"] is False and fold["variant"]["scored_before"] is False
    assert fold["scored_at"] == runs.git_commit(REPO)

    # --resume: the finished fold is reused (not trained again), the next one trained
    run_dir = Path(fold["run"])
    (run_dir / "last.onnx").unlink()  # a lost export is made again
    again = script.run([*argv, "--folds", "2", "--resume"])
    first, second = again["folds"]
    assert first["train_seconds"] == fold["train_seconds"]  # the same training, not a new one
    assert first["export_seconds"] is not None
    assert clip_sdrs(first) == pytest.approx(clip_sdrs(fold))
    assert second["held_out"] == ["cy", "di"] and second["export_seconds"] is not None
    assert second["scored_before"] is False
    report_path = tmp_path / "cv.json"
    assert json.loads(report_path.read_text())["complete"] is True

    # a run stopped after its first fold has left the report of that fold, marked partial
    whole_fold = script.run_fold

    def stopping_after_the_first_fold(args, fold, options):
        if fold.index == 1:
            raise UserError("stopped (the test)")
        return whole_fold(args, fold, options)

    script.run_fold = stopping_after_the_first_fold
    with pytest.raises(UserError, match="stopped"):
        script.run([*argv, "--folds", "2", "--resume"])
    script.run_fold = whole_fold
    partial = json.loads(report_path.read_text())
    assert partial["complete"] is False and partial["folds_planned"] == 2
    assert [row["fold"] for row in partial["folds"]] == [0]
    assert clip_sdrs(partial["folds"][0]) == clip_sdrs(first)
    assert "1 of 2 folds so far" in script.format_markdown(partial)[0]  # its first line
    third = script.run([*argv, "--folds", "2", "--resume", "--denoise"])
    assert [row["export_seconds"] for row in third["folds"]] == [None, None]  # both reused
    # the default settings' scores are kept per fold and model: not scored a third time
    assert [row["scored_before"] for row in third["folds"]] == [True, True]
    assert clip_sdrs(third["folds"][1]) == clip_sdrs(second)
    assert [row["variant"]["scored_before"] for row in third["folds"]] == [False, False]
    # --denoise with --postfilter: one variant with both options, scored on the same clips
    assert third["variant"]["name"] == "--postfilter none --denoise"
    assert third["variant"]["options"] == {"postfilter": "none", "denoise": True}
    for row, before in zip(third["folds"], (first, second), strict=True):
        denoised, plain = row["variant"], before["variant"]
        assert denoised["vocals_sdr"]["clips"] == plain["vocals_sdr"]["clips"]
        assert denoised["vocals_sdr"]["mean"] != plain["vocals_sdr"]["mean"]

    # a changed model is scored again (a fold's saved scores are per model file), and
    # --rescore scores again the same model
    scorings = len(json.loads((run_dir / script.SCORES).read_text()))
    shutil.copyfile(Path(second["run"]) / "last.onnx", run_dir / "last.onnx")
    changed = script.run([*argv, "--folds", "1", "--resume"])["folds"][0]
    assert changed["scored_before"] is False and changed["export_seconds"] is None
    assert clip_sdrs(changed) != pytest.approx(clip_sdrs(fold))
    rescored = script.run([*argv, "--folds", "1", "--resume", "--rescore"])["folds"][0]
    assert rescored["scored_before"] is False
    assert clip_sdrs(rescored) == pytest.approx(clip_sdrs(changed))
    # two more (the defaults and --postfilter none of the new model), replaced by --rescore
    assert len(json.loads((run_dir / script.SCORES).read_text())) == scorings + 2


def clip_sdrs(fold: dict) -> list[float]:
    return [clip["vocals_sdr"] for clip in fold["clips"]]


def test_a_fold_already_in_the_work_folder_needs_resume_and_the_same_steps(tmp_path):
    data = tmp_path / "mir1k"
    write_mir1k_like(data, ["ann", "bo", "cy", "di"], clips=1, seconds=0.5)
    run_dir = tmp_path / "cv" / "fold-0-ann-bo"
    run_dir.mkdir(parents=True)
    config = {"training": {"epochs": 4, "steps_per_epoch": 150}}
    (run_dir / "config.json").write_text(json.dumps(config))
    script = load_script()
    base = ["--data", str(data), "--folds", "1", "--work", str(tmp_path / "cv")]
    with pytest.raises(UserError, match="fold-0-ann-bo already exists; continue it with --resume"):
        script.run([*base, "--steps", "600"])
    with pytest.raises(UserError, match="is a run of 600 steps, not the 1050 asked for"):
        script.run([*base, "--steps", "1000", "--resume"])
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json"]  # nothing touched


def test_an_interrupted_fold_resumes_with_trains_own_resume(tmp_path):
    """A fold folder with a config of the planned steps continues through ``python -m train
    --resume`` on that run (the command line train's own parser accepts)."""
    from train.cli import get_parser

    script = load_script()
    run_dir = tmp_path / "cv" / "fold-1-Ani-bobon"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(
        json.dumps({"training": {"epochs": 4, "steps_per_epoch": 150}})
    )
    args = script.parse_args(["--data", str(tmp_path), "--work", str(tmp_path / "cv"), "--resume"])
    argv = script.resume_command(args, run_dir, 600)
    assert argv[1:3] == ["-m", "train"]
    given = get_parser().parse_args(argv[3:])
    assert given.resume and given.run_name == "fold-1-Ani-bobon"
    assert Path(given.runs_dir) == run_dir.parent
