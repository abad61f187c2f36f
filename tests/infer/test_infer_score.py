"""Scoring and sweeps over eval sets, with a scripted engine (no model)."""

from __future__ import annotations

import json
import re

import datasets
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from m1data.infer.budget import ANSWER_AFTER_BUDGET, ANSWER_AFTER_STOP, BudgetConfig
from m1data.infer.score import load_rows, run_infer
from m1data.infer.sweep import load_points, plot_sweep, run_sweep

from m1data.errors import UserError
from m1data.llm.types import Reply, Request
from m1data.schema import make_row, rows_to_dataset


class Oracle:
    """Thinks `think_words` words (one token each, then a stop token), then answers.

    The answer is the letter named in the question ("pick C"), so the right answer is known per
    row; questions containing "fail" get an engine error; "budget" in a question never stops.
    """

    name = "oracle"

    def __init__(self, think_words: int = 5):
        self.think_words = think_words
        self.calls = 0
        self.closed = False

    async def complete(self, request: Request) -> Reply:
        self.calls += 1
        prompt = request.prompt
        if "fail" in prompt:
            return Reply(status="error", error="scripted failure")
        if prompt.endswith((ANSWER_AFTER_STOP, ANSWER_AFTER_BUDGET)):
            letter = re.search(r"pick ([A-D])", prompt).group(1)
            return Reply(text=f"\nThe answer is \\boxed{{{letter}}}.", finish_reason="stop", completion_tokens=9)
        max_tokens = request.params["max_tokens"]
        n = 10**6 if "budget" in prompt else self.think_words
        if n + 1 <= max_tokens:
            return Reply(text=" x" * n + "\n", finish_reason="stop", completion_tokens=n + 1)
        return Reply(text=" x" * max_tokens, finish_reason="length", completion_tokens=max_tokens)

    async def aclose(self) -> None:
        self.closed = True


def rows(questions: list[tuple[str, int]]) -> datasets.Dataset:
    options = ["alpha", "beta", "gamma", "delta"]
    return datasets.Dataset.from_list(
        [
            {
                "id": f"q{i}",
                "prompt": q + "\n" + "\n".join(f"{l}. {o}" for l, o in zip("ABCD", options)),
                "options": options,
                "answer_idx": gold,
            }
            for i, (q, gold) in enumerate(questions)
        ]
    )


@pytest.fixture
def eval_sets(tmp_path):
    a = rows([("pick A", 0), ("pick C", 2), ("pick B", 3), ("pick D budget", 3)])
    path = tmp_path / "b.jsonl"  # rows as `m1data load-eval` writes them, read as they are
    b = [make_row(source="set_b", row_id=f"q{i}", question=q, options=["alpha", "beta", "gamma", "delta"],
                  answer_idx=gold, raw={}, seed=None) for i, (q, gold) in enumerate([("pick B", 1), ("fail pick A", 0)])]
    rows_to_dataset(b).to_json(str(path))
    return {"set_a": a, "set_b": path}


def test_run_infer_writes_records_and_metrics(tmp_path, eval_sets):
    engine = Oracle()
    config = BudgetConfig(model="m", thinking_budget=20, forcing_rounds=1)
    metrics = run_infer(engine, eval_sets, tmp_path / "out", config)
    assert engine.closed
    a, b = metrics["sets"]["set_a"], metrics["sets"]["set_b"]
    assert (a["n"], a["correct"], a["accuracy"]) == (4, 3, 0.75)
    assert (b["n"], b["correct"], b["errors"]) == (2, 1, 1)
    assert metrics["average_accuracy"] == pytest.approx((0.75 + 0.5) / 2)
    assert a["stop_reasons"] == {"model": 3, "budget": 1}
    assert a["mean_forcing_rounds"] == pytest.approx(0.75)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8")) == metrics
    lines = [json.loads(l) for l in (tmp_path / "out" / "records.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 6 and [l["eval_set"] for l in lines] == ["set_a"] * 4 + ["set_b"] * 2
    first = lines[0]
    assert first["id"] == "q0" and first["predicted"] == "A" and first["method"] == "boxed" and first["correct"]
    assert first["thinking"].count("Wait") == 1 and first["thinking_tokens"] == 12
    over = lines[3]
    assert over["stop_reason"] == "budget" and over["thinking_tokens"] == 20
    assert over["answer_prefix"] == ANSWER_AFTER_BUDGET
    assert lines[5]["method"] == "error" and lines[5]["correct"] is False


def test_limit_and_bad_eval_set(tmp_path, eval_sets):
    metrics = run_infer(Oracle(), eval_sets, tmp_path, BudgetConfig(model="m"), limit=1)
    assert metrics["n"] == 2 and metrics["limit"] == 1
    with pytest.raises(ValueError, match="answer_idx"):
        load_rows(datasets.Dataset.from_list([{"prompt": "x", "options": ["a", "b"]}]))


def test_sweep_grid_resume_and_plots(tmp_path, eval_sets):
    engine = Oracle(think_words=30)
    base = BudgetConfig(model="m")
    points = run_sweep(engine, eval_sets, tmp_path, base, budgets=[8, 64], forcing_rounds=[0, 2])
    assert [(p["budget"], p["forcing_rounds"]) for p in points] == [(8, 0), (8, 2), (64, 0), (64, 2)]
    assert all(set(p["accuracy"]) == {"set_a", "set_b", "average"} for p in points)
    assert (tmp_path / "b64-r2" / "records.jsonl").is_file()
    assert json.loads((tmp_path / "sweep.json").read_text(encoding="utf-8")) == points
    for png in ("accuracy_vs_budget.png", "accuracy_vs_forcing_rounds.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # thinking tokens grow with the budget and never exceed it
    tokens = {(p["budget"], p["forcing_rounds"]): p["mean_thinking_tokens"]["set_a"] for p in points}
    assert tokens[(8, 0)] <= 8 and tokens[(64, 2)] <= 64 and tokens[(64, 2)] > tokens[(64, 0)]

    again = Oracle()
    assert run_sweep(again, eval_sets, tmp_path, base, budgets=[8, 64], forcing_rounds=[0, 2]) == points
    assert again.calls == 0  # every point was read back



def test_a_sweep_in_a_notebook_cell_holds_its_folders_on_the_thread_it_runs_on(tmp_path, eval_sets):
    """From a cell (an event loop running) a sweep's job runs on a thread of its own (`run_sync`),
    and takes its folder's run lock and each point's there, one inside the other. The lock,
    re-entrant per thread, lets it through: the points a sweep outside a loop gives, read back
    by the next sweep into the folder."""
    import asyncio

    base = BudgetConfig(model="m")

    async def cell(engine):
        return run_sweep(engine, eval_sets, tmp_path / "cell", base, budgets=[8, 64])

    points = asyncio.run(cell(Oracle()))
    plain = run_sweep(Oracle(), eval_sets, tmp_path / "plain", base, budgets=[8, 64])
    assert [p["accuracy"] for p in points] == [p["accuracy"] for p in plain] and len(points) == 2
    again = Oracle()
    assert asyncio.run(cell(again)) == points and again.calls == 0


def test_sweep_runs_again_when_a_set_changed_under_the_same_name(tmp_path):
    """A finished point is read back only for the same rows: another file (or a fixed loader)
    under the same set name was reported with the old set's n and accuracy."""
    base = BudgetConfig(model="m")
    old = rows([("pick A", 0), ("pick B", 1)])  # both right
    new = rows([("pick A", 1), ("pick B", 0), ("pick C", 2)])  # one of three right
    assert run_sweep(Oracle(), {"medqa": old}, tmp_path, base, budgets=[8])[0]["accuracy"]["medqa"] == 1.0
    (point,) = run_sweep(Oracle(), {"medqa": new}, tmp_path, base, budgets=[8])
    assert point["n_per_set"] == {"medqa": 3} and point["accuracy"]["medqa"] == pytest.approx(1 / 3)
    again = Oracle()
    assert run_sweep(again, {"medqa": new}, tmp_path, base, budgets=[8]) == [point]
    assert again.calls == 0  # the same rows again: read back

def test_sweep_runs_again_when_the_prompts_change(tmp_path, eval_sets):
    """A finished point was read back when only the chat template (`--tokenizer`) had changed, and
    the sweep reported the old template's scores; it is read back only for the same prompts."""
    base = BudgetConfig(model="m")
    points = run_sweep(Oracle(), eval_sets, tmp_path, base, budgets=[8])
    other = Oracle()
    run_sweep(other, eval_sets, tmp_path, base, budgets=[8], render=lambda messages: "Q: " + messages[0]["content"])
    assert other.calls > 0
    assert run_sweep(Oracle(), eval_sets, tmp_path, base, budgets=[8]) == points  # the first prompts: from the cache


class CutAnswers(Oracle):
    """`Oracle`, whose answers run into answer_max_tokens on questions that say "long"."""

    async def complete(self, request: Request) -> Reply:
        reply = await super().complete(request)
        if "long" in request.prompt and request.prompt.endswith((ANSWER_AFTER_STOP, ANSWER_AFTER_BUDGET)):
            limit = request.params["max_tokens"]
            return Reply(text="\nThe answer is", finish_reason="length", completion_tokens=limit)
        return reply


def test_an_answer_cut_at_the_answer_limit_is_marked_and_counted(tmp_path, caplog):
    """An answer cut off at --answer-max-tokens was scored with nothing to show for it: the record
    said stop_reason "model". It is marked (answer_cut), counted per set, and said once."""
    sets = {"s": rows([("pick A", 0), ("pick B long", 1), ("pick C", 2)])}
    with caplog.at_level("WARNING", logger="m1data.infer.score"):
        metrics = run_infer(CutAnswers(), sets, tmp_path, BudgetConfig(model="m", answer_max_tokens=9))
    lines = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [line["answer_cut"] for line in lines] == [False, True, False]
    assert metrics["sets"]["s"]["answers_cut"] == 1 and metrics["sets"]["s"]["correct"] == 2
    assert sum(metrics["sets"]["s"]["verdicts"].values()) == 3 and metrics["sets"]["s"]["verdicts"]["no_answer"] == 1
    assert "1 answer(s) ran into the answer limit (9 tokens)" in caplog.text


def test_plot_sweep_several_models(tmp_path):
    points = [
        {"label": m, "budget": b, "forcing_rounds": 0, "accuracy": {"x": acc, "average": acc}}
        for m, acc in (("7B", 0.5), ("32B", 0.7))
        for b in (512, 1024, 2048)
    ]
    assert [p.name for p in plot_sweep(points, tmp_path)] == ["accuracy_vs_budget.png"]


def _grid(budgets: int, rounds: int) -> list[dict]:
    """Sweep points of one model over `budgets` budgets and `rounds` forcing rounds."""
    return [{"label": "m", "budget": 512 * 2 ** b, "forcing_rounds": r, "accuracy": {"x": 0.5, "average": 0.5}}
            for b in range(budgets) for r in range(rounds)]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from([1, 2]), st.sampled_from([1, 2])), min_size=2, max_size=3))
def test_a_plot_folder_holds_exactly_the_figures_of_its_last_plot(tmp_path_factory, grids):
    """A folder plotted again kept an earlier plot's figure for an axis the new points do not
    vary, as if it belonged to them. Now the figures are those of the last plot, beside the
    user's own files, which are never touched."""
    out = tmp_path_factory.mktemp("plots")
    mine = {"accuracy_vs_budget (my copy).png": b"mine", "notes.txt": b"notes"}
    for name, content in mine.items():
        (out / name).write_bytes(content)
    for budgets, rounds in grids:
        written = {p.name for p in plot_sweep(_grid(budgets, rounds), out)}
        assert written == {name for name, varies in (("accuracy_vs_budget.png", budgets > 1),
                                                     ("accuracy_vs_forcing_rounds.png", rounds > 1)) if varies}
        assert {p.name for p in out.iterdir()} == set(mine) | written | ({"figures.json"} if written else set())
        assert all((out / name).read_bytes() == content for name, content in mine.items())


def test_a_figure_an_older_plot_named_otherwise_is_removed_and_a_manifest_never_reaches_outside(tmp_path):
    """A figure listed by an earlier plot under a name this one does not write (another version's)
    is removed; a manifest edited to name a file outside the folder is not followed."""
    out = tmp_path / "plots"
    plot_sweep(_grid(2, 2), out)
    (out / "accuracy_vs_budget.png").rename(out / "figure1.png")  # what another version would have called it
    outside = tmp_path / "keep.png"
    outside.write_bytes(b"keep")
    listed = json.loads((out / "figures.json").read_text())
    listed["figures"] += ["figure1.png", "../keep.png", str(outside)]
    (out / "figures.json").write_text(json.dumps(listed))
    plot_sweep(_grid(2, 1), out)
    assert sorted(p.name for p in out.iterdir()) == ["accuracy_vs_budget.png", "figures.json"]
    assert outside.read_bytes() == b"keep"
    assert json.loads((out / "figures.json").read_text())["figures"] == ["accuracy_vs_budget.png"]


def _two_models(x_values, axis):
    return [
        {"label": label, "budget": v if axis == "budget" else 2048, "forcing_rounds": v if axis == "rounds" else 0,
         "accuracy": {"medqa_test": 0.6, "pubmedqa_test": 0.7, "average": 0.65},
         "n_per_set": {"medqa_test": 1273, "pubmedqa_test": 500}}
        for label in ("runs/ckpt/m1-7B-1K", "Qwen/Qwen2.5-7B-Instruct")  # identical accuracies: overlapping
        for v in x_values
    ]


def test_sweep_figures_read_like_the_papers():
    from m1data.infer.sweep import short_label, sweep_figure
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import to_hex

    fig = sweep_figure(_two_models([512, 1024, 2048, 4096], "budget"), "budget", "forcing_rounds", "t")
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.has_data()]
    assert [ax.get_title() for ax in panels] == ["medqa_test (n = 1,273)", "pubmedqa_test (n = 500)",
                                                 "average (mean of 2 sets)"]
    for ax in panels:
        assert ax.get_ylim() == (0, 100)
        lines = [line for line in ax.get_lines() if line.get_label() in ("m1-7B-1K", "Qwen2.5-7B-Instruct")]
        assert len({to_hex(line.get_color()) for line in lines}) == 2  # one colour per model
        xs = [tuple(line.get_xdata()) for line in lines]
        assert xs[0] != xs[1]  # equal accuracies are drawn side by side, not on top of each other
        assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 2  # a 95% band per model
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["m1-7B-1K", "Qwen2.5-7B-Instruct"]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend_box = legend.get_window_extent(renderer)
    assert all(legend_box.y1 < ax.get_tightbbox(renderer).y0 for ax in panels)  # below every panel

    rounds = sweep_figure(_two_models([0, 1, 2, 3], "rounds"), "forcing_rounds", "budget", "t")
    ticks = rounds.axes[0].get_xticks()
    assert all(float(t).is_integer() for t in ticks)
    assert short_label("runs/m1/checkpoint-50") == "m1/checkpoint-50"


def test_each_series_of_a_budget_figure_has_its_own_trend():
    """Two series of one model, flat at 20% (0 rounds) and 0% (2 rounds): the one trend line drawn
    over all its points sat at 10%, matching neither (audit)."""
    from m1data.infer.sweep import sweep_figure

    points = [{"label": "m", "budget": b, "forcing_rounds": r, "accuracy": {"s": acc, "average": acc},
               "n_per_set": {"s": 40}} for r, acc in ((0, 0.2), (2, 0.0)) for b in (4, 16, 64)]
    fig = sweep_figure(points, "budget", "forcing_rounds", "t")
    trends = [line for line in fig.axes[0].get_lines() if line.get_label().startswith("_") and len(line.get_ydata()) == 50]
    assert sorted(round(float(max(line.get_ydata())), 6) for line in trends) == [0.0, 20.0]


def test_rows_without_a_usable_answer_key_are_counted_as_unscored_not_asked_nor_scored(tmp_path):
    """A row whose answer key names no option (the eval loaders give an unreadable one
    ``answer_idx`` -1) made the whole run fail with a UserError after every call had been paid
    for. Now it is asked nothing, counted per set as unscored (with its id), and is in no
    denominator: the accuracy is over the questions that can be scored."""
    good = [dict(row) for row in rows([("pick A", 0), ("pick B", 1), ("pick C", 0)])]  # two right, one wrong
    broken = [{**good[0], "id": "minus", "answer_idx": -1}, {**good[1], "id": "seven", "answer_idx": 7}]
    engine = Oracle()
    metrics = run_infer(engine, {"s": datasets.Dataset.from_list(good + broken)}, tmp_path, BudgetConfig(model="m"))
    s = metrics["sets"]["s"]
    assert (s["n"], s["correct"], s["unscored"], s["unscored_ids"]) == (3, 2, 2, ["minus", "seven"])
    assert s["accuracy"] == pytest.approx(2 / 3) and metrics["average_accuracy"] == pytest.approx(2 / 3)
    assert metrics["unscored"] == 2 and metrics["n"] == 3
    assert engine.calls == 3 * 2  # one thinking and one answer call per scored question, none for the others
    lines = (tmp_path / "records.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["q0", "q1", "q2"]


@pytest.mark.parametrize("key", [1.7, True, "1"])
def test_a_dataset_whose_keys_are_no_index_is_not_scored(tmp_path, key):
    """A Dataset given to `run_infer` had its keys taken by int(): 1.7 and True scored as B, "1"
    as B, where the same rows in a file are unscored (not_an_index), and "B" ended in a traceback.
    Such keys name no option: the set has nothing to score, said before any call."""
    broken = [{**dict(row), "answer_idx": key} for row in rows([("pick B", 1), ("pick B", 1)])]
    engine = Oracle()
    with pytest.raises(UserError, match="no question with a usable answer key"):
        run_infer(engine, {"s": datasets.Dataset.from_list(broken)}, tmp_path, BudgetConfig(model="m"))
    assert engine.calls == 0


def test_a_dataset_row_whose_key_its_own_answer_fields_contradict_is_unscored(tmp_path):
    """The file door leaves a row whose answer_letter or answer_text names another option than its
    answer_idx unscored (answer_mismatch); the same row in a Dataset was scored against its key."""
    good = [dict(row) for row in rows([("pick A", 0), ("pick B", 1), ("pick C", 2)])]
    good = [{**row, "answer_letter": "ABCD"[row["answer_idx"]], "answer_text": row["options"][row["answer_idx"]]}
            for row in good]
    good[1]["answer_letter"] = "C"
    good[2]["answer_text"] = "alpha"
    metrics = run_infer(Oracle(), {"s": datasets.Dataset.from_list(good)}, tmp_path, BudgetConfig(model="m"))
    s = metrics["sets"]["s"]
    assert (s["n"], s["correct"], s["unscored_ids"]) == (1, 1, ["q1", "q2"])


def test_rows_without_ids_keep_their_numbers_when_unscored_ones_are_left_out(tmp_path):
    plain = [{k: v for k, v in row.items() if k != "id"} for row in rows([("pick A", 9), ("pick B", 1)])]
    metrics = run_infer(Oracle(), {"s": datasets.Dataset.from_list(plain)}, tmp_path, BudgetConfig(model="m"))
    assert metrics["sets"]["s"]["unscored_ids"] == ["0"]
    (line,) = (tmp_path / "records.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["id"] == "1"


@pytest.mark.parametrize(
    ("sets", "limit", "message"),
    [
        ({"good": rows([("pick A", 0)]), "empty": rows([("pick A", 0)]).select([])}, None, "'empty' has no question"),
        ({"broken": rows([("pick A", -1)])}, None, "'broken' has no question with a usable answer key"),
        ({"good": rows([("pick A", 0)])}, 0, "limit must be at least 1"),
        ({"good": rows([("pick A", 0)])}, -1, "limit must be at least 1"),
        ({}, None, "no eval set"),
    ],
)
def test_nothing_to_score_is_a_user_error_before_any_call(tmp_path, sets, limit, message):
    """An empty set (or --limit 0, or a negative one) was scored 0 of 0 = accuracy 0.0 and pulled
    Table 1's average down (a good set at 1.0 beside an empty one averaged 0.5); no set at all
    wrote a metrics.json of nothing."""
    from m1data.errors import UserError

    engine = Oracle()
    with pytest.raises(UserError, match=message):
        run_infer(engine, sets, tmp_path / "out", BudgetConfig(model="m"), limit=limit)
    assert engine.calls == 0 and not (tmp_path / "out" / "metrics.json").exists()


@pytest.mark.parametrize(("budgets", "rounds", "message"),
                         [([8, -1], [0], "must be >= 0"), ([8], [0, -2], "must be >= 0"),
                          ([8, 16, 8], [0], "budgets .* twice"), ([8], [1, 1], "forcing rounds .* twice"),
                          ([], [0], "no budgets")])
def test_the_grid_is_checked_before_any_point_runs(tmp_path, eval_sets, budgets, rounds, message):
    """A negative budget late in --budgets stopped the sweep only after the points before it had
    been paid for; a budget given twice wrote the same point twice into sweep.json and the plots."""
    from m1data.errors import UserError

    engine = Oracle()
    with pytest.raises(UserError, match=message):
        run_sweep(engine, eval_sets, tmp_path, BudgetConfig(model="m"), budgets=budgets, forcing_rounds=rounds)
    assert engine.calls == 0 and not list(tmp_path.glob("b*-r*"))


def test_sweep_points_and_plot_titles_show_unscored_questions(tmp_path):
    from m1data.infer.sweep import sweep_figure

    data = datasets.Dataset.from_list([dict(r) for r in rows([("pick A", 0), ("pick B", -1)])])
    points = run_sweep(Oracle(), {"s": data}, tmp_path, BudgetConfig(model="m"), budgets=[8, 16])
    assert all(p["n_per_set"] == {"s": 1} and p["unscored_per_set"] == {"s": 1} for p in points)
    fig = sweep_figure(points, "budget", "forcing_rounds", "t")
    assert fig.axes[0].get_title() == "s (n = 1, 1 unscored)"


def test_a_point_read_back_under_another_label_says_the_new_label_everywhere(tmp_path, eval_sets):
    """Resuming a sweep with another --label read each finished point back and called it by the
    new label in sweep.json, while the point's own metrics.json (what `m1data infer plot` reads
    for a point folder) kept the old one."""
    from m1data.infer.sweep import load_points

    base = BudgetConfig(model="m")
    run_sweep(Oracle(), eval_sets, tmp_path, base, budgets=[8, 16], label="first")
    again = Oracle()
    points = run_sweep(again, eval_sets, tmp_path, base, budgets=[8, 16], label="second")
    assert again.calls == 0 and {p["label"] for p in points} == {"second"}
    assert {p["label"] for p in load_points(tmp_path / "b8-r0")} == {"second"}


def test_a_plot_killed_mid_write_keeps_the_previous_figure(tmp_path, eval_sets):
    """`infer plot` (and a sweep) saved each figure straight to its name: a kill while matplotlib
    wrote it left a PNG cut short there, the figure drawn before gone. The previous figure stays
    whole; the same command again draws the one a plot into a new folder draws."""
    from kill_points import killed_writing

    run_sweep(Oracle(), eval_sets, tmp_path / "sweep", BudgetConfig(model="m"), budgets=[8, 64])
    plots = tmp_path / "plots"
    before = plot_sweep(load_points(tmp_path / "sweep"), plots)[0].read_bytes()
    command = ["infer", "plot", tmp_path / "sweep", "--label", "m1-7B-1K", "--out"]

    killed = killed_writing("*budget*", [*command, plots])
    assert killed.returncode == -9, killed.stderr
    assert (plots / "accuracy_vs_budget.png").read_bytes() == before

    assert killed_writing("no-such-file", [*command, plots]).returncode == 0
    assert killed_writing("no-such-file", [*command, tmp_path / "fresh"]).returncode == 0
    after = (plots / "accuracy_vs_budget.png").read_bytes()
    assert after != before and after == (tmp_path / "fresh" / "accuracy_vs_budget.png").read_bytes()
    assert sorted(p.name for p in plots.iterdir()) == ["accuracy_vs_budget.png", "figures.json"]


def test_a_plot_renames_its_figures_only_holding_the_folder(tmp_path, eval_sets):
    """Two `infer plot --out` into one folder at once interleaved their renames, so one's budget
    figure could end beside the other's forcing-rounds figure. Both are now drawn first and
    renamed holding the folder: while another holds it, neither is renamed; let go, the command
    finishes with the figures a plot into a new folder draws."""
    from kill_points import killed_writing, renaming_while_held

    run_sweep(Oracle(), eval_sets, tmp_path / "sweep", BudgetConfig(model="m"), budgets=[8, 64],
              forcing_rounds=[0, 1])
    plots = tmp_path / "plots"
    plot_sweep(load_points(tmp_path / "sweep"), plots)
    before = {p.name: p.read_bytes() for p in plots.iterdir()}
    command = ["infer", "plot", tmp_path / "sweep", "--label", "m1-7B-1K", "--out"]
    names, plotted = renaming_while_held([*command, plots], plots, partials=2)
    assert plotted.returncode == 0, plotted.stderr
    assert len(names) == 5 and set(before) < set(names)  # the figures, their list, and two partials
    assert killed_writing("no-such-file", [*command, tmp_path / "fresh"]).returncode == 0
    assert sorted(before) == ["accuracy_vs_budget.png", "accuracy_vs_forcing_rounds.png", "figures.json"]
    for name, old in before.items():
        if name == "figures.json":  # the same two names, listed again
            assert (plots / name).read_bytes() == old
            continue
        assert (plots / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes() != old



class EchoesOptions(Oracle):
    """Thinks, then answers by listing the options again, as small models do: no answer at all."""

    async def complete(self, request: Request) -> Reply:
        if request.prompt.endswith((ANSWER_AFTER_STOP, ANSWER_AFTER_BUDGET)):
            return Reply(text="\nA. alpha\nB. beta\nC. gamma\nD. delta", finish_reason="stop", completion_tokens=12)
        return await super().complete(request)


@pytest.mark.parametrize("budget", [20, 2])  # the model stops (answer marker), the budget stops it (+ Final Answer:)
def test_the_answer_marker_written_before_an_answer_is_not_graded(tmp_path, budget):
    """Graded with the marker m1data writes before it, an echoed list read as "answer A": scored
    correct for every key A (audit)."""
    sets = {"s": rows([("pick A", 0), ("pick B", 1)])}
    metrics = run_infer(EchoesOptions(), sets, tmp_path, BudgetConfig(model="m", thinking_budget=budget))
    assert metrics["sets"]["s"]["correct"] == 0 and metrics["sets"]["s"]["verdicts"] == {"no_answer": 2}
