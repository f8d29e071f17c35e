"""Unit tests of the stages: parse -> check -> graph -> schedule, and the CLI."""
import networkx as nx
import pytest

import rnnspec
from conftest import SPECS
from rnnspec import ast
from rnnspec.api import analyze
from rnnspec.cli import main
from rnnspec.delays import SAME, Step
from rnnspec.fuse import fuse_products
from rnnspec.graph import build_graph, edges_of, to_dot, unroll
from rnnspec.schedule import schedule
from rnnspec.parse import parse
from rnnspec.sizes import Size

ELMAN = (SPECS / "elman.rnn").read_text()


# ---- parse ----------------------------------------------------------------------------------
def test_parse_positions_and_frozen_nodes():
    spec = parse("dim n = 3\n  state h: n = zeros\nh[t] = tanh(h[t-2]\n  + 1)\n", "a.rnn")
    dim, state, eq = spec.statements
    assert (dim.line, dim.column) == (1, 1)
    assert (state.line, state.column) == (2, 3)
    assert isinstance(eq, ast.Equation) and eq.axis == "t"
    call = eq.expr
    assert call.func == "tanh" and (call.line, call.column) == (3, 8)
    ref = call.args[0].left
    assert ref.index == ast.Index("rel", -2, "t", line=3, column=15)
    with pytest.raises(Exception):
        eq.name = "g"  # frozen


def test_parse_all_statement_forms():
    text = """
        dim in = 2
        input x[t]: in
        input s: 2*in + 1
        target y[t]: class(in)
        target r: in
        param W: (in, in) = normal(0.1)
        param a: scalar = constant(0.5)
        const k = -1.5e-2
        state h: in = given
        h[t]: in = a * h[t-1] - -k * x[t] / 2
        v = W @ h[end - 1]
        loss = mean squared_error(v, r)
        loss = sum cross_entropy(h[t], y[t]) at t = 1, end, end-2
    """
    kinds = [type(s).__name__ for s in parse(text).statements]
    assert kinds == ["DimDecl", "InputDecl", "InputDecl", "TargetDecl", "TargetDecl",
                     "ParamDecl", "ParamDecl", "ConstDecl", "StateDecl", "Equation", "Equation",
                     "Loss", "Loss"]
    st = parse(text).statements
    assert st[2].size.terms[0] == ast.SizeTerm(2, "in", line=4, column=18)
    assert st[7].value == -0.015
    assert [s.text() for s in st[12].select.steps] == ["1", "end", "end-2"]


def test_unparse_round_trips_precedence():
    eq = parse("h[t] = (a - (b - c)) * -(d + e) @ f[t-1]").statements[0]
    assert ast.unparse(eq.expr) == "(a - (b - c)) * -(d + e) @ f[t-1]"


def test_grammar_file_is_used():
    from rnnspec.parse import grammar_path
    assert grammar_path().name == "rnnspec.lark"


# ---- check ----------------------------------------------------------------------------------
def test_check_infers_sizes_and_creates_connection_params():
    a = analyze((SPECS / "lstm.rnn").read_text())
    m = a.model
    assert m.values["o"].size == Size.dim("out")
    assert m.params["W_f_x"].shape == (Size.dim("hidden"), Size.dim("in"))
    assert m.params["b_c"].shape == (Size.dim("hidden"),) and m.params["b_c"].auto
    skip = analyze((SPECS / "skip.rnn").read_text()).model
    assert {"W_h_x", "W_h_h1", "W_h_h3", "b_h", "W_o_h", "b_o"} == set(skip.params)


def test_dims_override_and_sizes():
    m = analyze(ELMAN, {"n": 64}).model
    assert m.dims == {"m": 3, "n": 64}
    assert (Size.dim("in") + Size.dim("hidden") + Size((), 2)).text() == "hidden + in + 2"
    assert Size((("h", 4),), 0).evaluate({"h": 3}) == 12


def test_warning_for_unused_param():
    m = analyze(ELMAN + "\nparam Z: n\n").model
    assert any("parameter 'Z' is never used" in w.message for w in m.warnings)


# ---- graph and schedule ---------------------------------------------------------------------
def test_cell_graph_has_delays():
    g = analyze((SPECS / "skip.rnn").read_text()).graph.cell_graph()
    delays = sorted(d["delay"].steps for u, v, d in g.edges(data=True) if u == v == "h")
    assert delays == [1, 3]
    assert {d["delay"] for u, v, d in g.edges(data=True) if u == v == "h"} == {Step(1), Step(3)}
    assert g.nodes["h"]["kind"] == "state" and g.nodes["x"]["kind"] == "input"


def test_zero_delay_subgraph_is_acyclic_and_unroll_is_a_dag():
    for path in SPECS.glob("*.rnn"):
        a = analyze(path.read_text(), filename=str(path))  # (imports: relative to it)
        g = a.graph.nx
        zero = nx.DiGraph([(u, v) for u, v, d in g.edges(data=True) if SAME in d["delays"]])
        assert nx.is_directed_acyclic_graph(zero), path
        u = unroll(a.graph, 4)
        assert nx.is_directed_acyclic_graph(u)


def _edges(g):
    return list(g.nodes), [(u, v, data) for u, v, data in g.edges(data=True)]


def _gated_encdec() -> str:
    """encdec.rnn with a gate reading s[i-1] too (fused with Ws @ s[i-1]; s starts from C)."""
    text = (SPECS / "encdec.rnn").read_text()
    text = text.replace("param R: (hidden, hidden)\n",
                        "param R: (hidden, hidden)\nparam Wg: (hidden, hidden)\n")
    old = "s[i] = tanh(bs + Ws @ s[i-1] + Us @ e[i] + R @ C)"
    assert old in text
    return text.replace(old, "g[i] = sigmoid(Wg @ s[i-1])\n"
                        "s[i] = g[i] * tanh(bs + Ws @ s[i-1] + Us @ e[i] + R @ C)")


@pytest.mark.parametrize("name", ["lstm", "bidirectional", "hierarchical", "self_attention",
                                  "gated_encdec"])
def test_fuse_edits_one_store(name):
    # the ops' arguments are the graph's only edges: after fusion the networkx graph is the one
    # derived from them (same nodes, edges, delays and order), and the input graph is untouched
    text = _gated_encdec() if name == "gated_encdec" else (SPECS / f"{name}.rnn").read_text()
    graph = build_graph(analyze(text, filename=str(SPECS / f"{name}.rnn")).model)
    before = {i: list(op.args) for i, op in graph.ops.items()}
    fused = fuse_products(graph, schedule(graph))
    assert fused is not graph and any(op.op == "part" for op in fused.ops.values())
    if name == "gated_encdec":
        assert fused.starts()  # C -> s: an INIT edge, not an argument
    assert _edges(fused.nx) == _edges(edges_of(fused.ops, fused.starts()))
    assert {(a, i) for i, op in fused.ops.items() for a, _ in op.args} | \
        set(fused.starts()) == set(fused.nx.edges)
    assert {i: list(op.args) for i, op in graph.ops.items()} == before
    assert _edges(graph.nx) == _edges(edges_of(graph.ops, graph.starts()))


def test_unroll_skip_connection_reaches_initial_values():
    u = unroll(analyze((SPECS / "skip.rnn").read_text()).graph, 4)
    assert set(u.predecessors(("h", 1))) == {("x", 1), ("h", 0), ("h", -2)}
    assert set(u.predecessors(("h", 4))) == {("x", 4), ("h", 3), ("h", 1)}


def test_schedule_hoists_input_projections_and_output_head():
    a = analyze(ELMAN)
    s, ops = a.schedule, a.graph.ops
    by_label = {ops[i].label: i for i in ops}
    assert [(st.kind, st.direction) for st in s.stages] == [("all", 0), ("loop", 1), ("all", 0)]
    assert s.stage_of[by_label["U_x"]] == 0            # U @ x[t]: one product before the loop
    assert s.stage_of[by_label["W_s_prev"]] == 1       # W @ s[t-1]: the recurrence
    assert s.stage_of[a.graph.values["s"]] == 1
    assert s.stage_of[a.graph.values["o"]] == 2        # softmax head: after the loop
    assert s.padding[a.graph.values["s"]] == (1, 0)


def test_schedule_deep_rnn_between_two_recurrences_is_in_the_loop():
    a = analyze((SPECS / "deep.rnn").read_text())
    by_label = {a.graph.ops[i].label: i for i in a.graph.ops}
    assert a.schedule.in_loop(by_label["R_h"])
    assert sum(st.kind == "loop" for st in a.schedule.stages) == 1


def test_to_dot():
    a = analyze((SPECS / "skip.rnn").read_text())
    dot = to_dot(a.graph.cell_graph(), "skip")
    assert '"h" -> "h" [label="t-3", style=dashed];' in dot
    assert dot.startswith('digraph "skip" {')


# ---- CLI ------------------------------------------------------------------------------------
def test_cli_check_prints_parameter_table(capsys):
    assert main(["check", str(SPECS / "lstm.rnn")]) == 0
    out = capsys.readouterr().out
    assert "W_f_x      hidden×in      15     xavier       auto" in out
    assert "total: 204 parameters" in out


def test_cli_compile_writes_checked_module(tmp_path, capsys):
    out = tmp_path / "gru.py"
    assert main(["compile", str(SPECS / "gru.rnn"), "-o", str(out), "--dim", "hidden=32"]) == 0
    err = capsys.readouterr().err
    assert "gradcheck ok" in err
    mod = rnnspec.load_module(out.read_text(), "gru_cli")
    assert mod.DIMS["hidden"] == 32


def test_cli_gradcheck_table_and_exit_code(capsys):
    assert main(["gradcheck", str(SPECS / "jordan.rnn"), "--T", "3", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "params.W" in out and "PASSED" in out
    assert main(["gradcheck", str(SPECS / "lstm.rnn"), "--directional", "--dim",
                 "hidden=16"]) == 0


def test_cli_graph(tmp_path, capsys):
    out = tmp_path / "e.dot"
    assert main(["graph", str(SPECS / "elman.rnn"), "--unroll", "3", "-o", str(out)]) == 0
    assert '"s[2]" -> "s[3]";' in out.read_text()
    assert main(["graph", str(SPECS / "lstm.rnn"), "--params"]) == 0
    assert '"W_f_h" -> "f";' in capsys.readouterr().out


def test_cli_help_has_examples(capsys):
    for cmd in ("compile", "check", "gradcheck", "graph"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
        assert "example:" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--version"])
    assert rnnspec.__version__ in capsys.readouterr().out


def test_cli_check_summary_rows(capsys):
    """rnnspec check's summary: one row per input, target, state, value and loss term, with
    sizes, steps, the parameters a value's connections create (summed from the table below)
    and the defining line, of the imported file for an imported block; the totals."""
    assert main(["check", str(SPECS / "lstm.rnn")]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.split("\n") if line[:1].isalpha()}
    assert "class(out=4)" in rows["y"] and "every t" in rows["y"]
    assert "state (from zeros; forward in t)" in rows["C"] and " 45 " in rows["C"]
    assert " 45 " in rows["f"] and "21: f[t]: hidden = gate(x[t], h[t-1])" in rows["f"]
    assert " 24 " in rows["o"]  # W_o_h 20 + b_o 4
    assert "sum over steps" in rows["loss"]
    assert "total: 204 parameters (1.6 KB as float64, 816 B as float32); 1 input, 1 target, " \
           "2 states, 6 values, 1 loss term" in out
    assert main(["check", str(SPECS / "stacked_lstm_lib.rnn")]) == 0
    out = capsys.readouterr().out
    assert "lib/cells.rnn:10: f[t]: hidden = gate(u[t], h[t-1])" in out
    assert main(["check", str(SPECS / "many_to_one.rnn")]) == 0
    assert "one per sequence" in capsys.readouterr().out
