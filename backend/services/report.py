"""The report of a study: figures like the paper's, a summary table of headline numbers and checks, every number
as CSV, and one static HTML file (plotly.js inline: it opens offline, no CDN).

``collect(study)`` gathers the study's minima and results into plain dicts (``ReportData``); the figures are drawn
by the pure builders of :mod:`toroid.plots` (shared with the dashboard); ``build_figures``, ``render_html``,
``csv_tables`` and ``write_report`` assemble the outputs.

Figures (per variant of a sweep): local energy curves per sampler, mean +- std over seeds (docs/method.md §6, fig. 1);
local energy at the largest sigma against test error, with Kendall's tau; when the study measured it, the top Hessian
eigenvalue of the normalized network against test error (sharpness.csv); error profiles along each path kind, one
curve per pair type with its mean +- std over pairs (sec. 7, fig. 2); barrier heights by pair type and kind; the
distance matrices (Euclidean raw / aligned / normalized / normalized+aligned, geodesic; Hamming for binary
networks, sec. 5); the one-bend points' distances to their endpoints. Binary networks' flip paths appear as the
path kind ``flip``.
"""

from __future__ import annotations

import html
import io
import statistics
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from toroid.backend.services.tables import csv_text
from toroid.plots import (
    KIND_LABELS,
    METRIC_LABELS,
    METRIC_UNITS,
    barrier_heights,
    barrier_profiles,
    bend_distances,
    flatness_bands,
    flatness_scatter,
    matrix_heatmap,
    mean_std,
    percent,
    sharpness_scatter,
)

PATH_KINDS = ("linear", "linear_aligned", "geodesic", "flip", "one_bend")  # the order of the path figures


# ============================================================================================= data
@dataclass
class VariantData:
    """Everything measured in one variant (one architecture config) of a study."""

    name: str
    labels: list[str]
    minima: list[dict[str, Any]] = field(default_factory=list)  # tag, label, seed, id, errors, local_energy
    flatness: dict[str, dict[str, Any]] = field(default_factory=dict)  # tag -> LocalEnergy dict
    sharpness: dict[str, dict[str, Any]] = field(default_factory=dict)  # tag -> HessianSharpness dict
    distances: dict[str, Any] | None = None  # tags, matrices
    paths: list[dict[str, Any]] = field(default_factory=list)  # type, kind, a, b, data (PathProfile / BendResult)
    binary: bool = False


@dataclass
class ReportData:
    study: dict[str, Any]
    variants: list[VariantData]
    missing: list[str] = field(default_factory=list)  # step ids without an output (an unfinished study)


def collect(study_id: str) -> ReportData:
    """Read a study's minima and results from the database into ``ReportData``."""
    from toroid.store.db import new_session
    from toroid.store.models import Minimum, Result
    from toroid.store.studies import get_study, study_record
    from toroid.store.study_spec import StudySpec, plan
    from toroid.worker.landscape.nets import is_binary_architecture

    found = get_study(study_id)
    if found is None:
        raise KeyError(study_id)
    study, job = found
    spec = StudySpec.model_validate(study.spec)
    steps = plan(spec)
    outputs = study.outputs or {}
    binary = is_binary_architecture(spec.architecture)
    variants: dict[str, VariantData] = {}
    missing: list[str] = []
    with new_session() as session:
        for step in steps:
            variant = variants.setdefault(step.variant, VariantData(
                name=step.variant, labels=[s.name for s in spec.samplers], binary=binary))
            out = outputs.get(step.id)
            if not out:
                missing.append(step.id)
                continue
            if step.kind == "train":
                m = session.get(Minimum, out["minimum_id"])
                if m is None:
                    missing.append(step.id)
                    continue
                variant.minima.append({
                    "tag": f"{step.args['label']}{step.args['seed']}", "label": step.args["label"],
                    "seed": step.args["seed"], "id": m.id, "name": m.name, "train_error": m.train_error,
                    "test_error": m.test_error, "local_energy": None, "top_eigenvalue": None, "hessian_trace": None,
                    "epochs_run": (m.provenance or {}).get("epochs_run"),
                })
                continue
            result = session.get(Result, out["result_id"])
            if result is None:
                missing.append(step.id)
                continue
            data = result.data or {}
            if step.kind == "flatness":
                tag = f"{step.args['label']}{step.args['seed']}"
                variant.flatness[tag] = data
                for m in variant.minima:
                    if m["tag"] == tag:
                        m["local_energy"] = largest_sigma_value(data)
            elif step.kind == "sharpness":
                tag = f"{step.args['label']}{step.args['seed']}"
                variant.sharpness[tag] = data
                for m in variant.minima:
                    if m["tag"] == tag:
                        m["top_eigenvalue"], m["hessian_trace"] = data.get("top_eigenvalue"), data.get("trace")
            elif step.kind == "distances":
                variant.distances = {"tags": [f"{lab}{seed}" for lab, seed in step.args["tags"]],
                                     "matrices": data.get("matrices") or {}}
            else:
                variant.paths.append({
                    "type": step.args["type"], "kind": step.args["kind"],
                    "a": f"{step.args['a'][0]}{step.args['a'][1]}", "b": f"{step.args['b'][0]}{step.args['b'][1]}",
                    "data": data,
                })
    return ReportData(study=study_record(study, job), variants=list(variants.values()), missing=missing)


def largest_sigma_value(data: Mapping[str, Any]) -> float | None:
    sigmas, means = data.get("sigmas") or [], data.get("mean") or []
    if not sigmas or len(sigmas) != len(means):
        return None
    return float(means[max(range(len(sigmas)), key=lambda i: sigmas[i])])


# ============================================================================================= summary
def _by_label(variant: VariantData, key: str) -> dict[str, float]:
    out = {}
    for label in variant.labels:
        vals = [m[key] for m in variant.minima if m["label"] == label and m[key] is not None]
        if vals:
            out[label] = statistics.fmean(vals)
    return out


def _order_check(values: dict[str, float], order: Sequence[str]) -> bool | None:
    if not all(o in values for o in order):
        return None
    return all(values[a] < values[b] for a, b in itertools_pairs(order))


def itertools_pairs(seq: Sequence[str]) -> list[tuple[str, str]]:
    return [(seq[i], seq[i + 1]) for i in range(len(seq) - 1)]


def _pct(v: float | None) -> str:
    return percent(v, 3, "g")


def summary_rows(variant: VariantData) -> list[dict[str, Any]]:
    """Headline numbers and the paper's checks: {"check", "value", "passed" (True/False/None), "detail"}."""
    rows: list[dict[str, Any]] = []
    paper_order = ["rsgd", "sgd", "adv"]
    le = _by_label(variant, "local_energy")
    if le:
        passed = _order_check(le, paper_order)
        rows.append({"check": "local energy at the largest sigma: rsgd < sgd < adv",
                     "value": ", ".join(f"{k} {_pct(v)}" for k, v in le.items()), "passed": passed,
                     "detail": "mean over seeds (docs/method.md §6: flatter samplers have lower local energy)"})
    te = _by_label(variant, "test_error")
    if te:
        passed = _order_check(te, paper_order)
        detail = "mean over seeds"
        if passed is False and le and _order_check(le, paper_order):
            detail += ("; the flatness order holds but test errors differ by less than the seed spread or by a "
                       "few test images (small test set): see the minima table")
        rows.append({"check": "test error: rsgd < sgd < adv", "value": ", ".join(f"{k} {_pct(v)}"
                                                                                  for k, v in te.items()),
                     "passed": passed, "detail": detail})
    tr = _by_label(variant, "train_error")
    if tr:
        rows.append({"check": "train error of the minima (mean)", "value": ", ".join(f"{k} {_pct(v)}"
                                                                                     for k, v in tr.items()),
                     "passed": None, "detail": "training stops at the target train error or the epoch budget"})
    if variant.distances:
        metric = "hamming" if variant.binary else "geodesic"
        matrix = variant.distances["matrices"].get(metric)
        tags = variant.distances["tags"]
        if matrix:
            within = {}
            for label in variant.labels:
                idx = [i for i, t in enumerate(tags) if t.rstrip("0123456789") == label]
                vals = [matrix[i][j] for k, i in enumerate(idx) for j in idx[k + 1:]]
                if vals:
                    within[label] = statistics.fmean(vals)
            if "rsgd" in within and "adv" in within:
                rows.append({"check": f"{metric} distance rsgd-rsgd < adv-adv",
                             "value": f"rsgd-rsgd {within['rsgd']:.4g}, adv-adv {within['adv']:.4g}",
                             "passed": within["rsgd"] < within["adv"],
                             "detail": "normalized + aligned (docs/method.md §5: flat minima lie closer together)"})
            elif within:
                rows.append({"check": f"{metric} distance within samplers", "value": ", ".join(
                    f"{k}-{k} {v:.4g}" for k, v in within.items()), "passed": None, "detail": ""})
    kinds = list(dict.fromkeys(p["kind"] for p in variant.paths))  # the spec's order (a set's varies by process)
    barriers = {k: mean_std([p["data"]["barrier"] for p in variant.paths if p["kind"] == k])[0] for k in kinds}
    if barriers:
        rows.append({"check": "mean barrier by path kind", "value": ", ".join(
            f"{KIND_LABELS.get(k, k)} {_pct(v)}" for k, v in barriers.items()), "passed": None,
            "detail": "max train error along the path, mean over pairs"})
    curved = "flip" if variant.binary else "geodesic"
    if curved in barriers and "linear" in barriers:
        rows.append({"check": f"{curved} barriers lower than linear ones",
                     "value": f"{curved} {_pct(barriers[curved])}, linear {_pct(barriers['linear'])}",
                     "passed": barriers[curved] < barriers["linear"], "detail": "mean over pairs (docs/method.md §7)"})
    bends = [p["data"]["barrier"] for p in variant.paths if p["kind"] == "one_bend"]
    if bends:
        rows.append({"check": "one-bend barriers below 1% train error", "value": f"max {_pct(max(bends))}, mean "
                     f"{_pct(statistics.fmean(bends))} over {len(bends)} pairs", "passed": max(bends) < 0.01,
                     "detail": "docs/method.md §7: minima connect through one retrained bend"})
    return rows


# ============================================================================================= assembling
@dataclass
class Figure:
    section: str
    title: str
    figure: go.Figure


def build_figures(data: ReportData) -> list[tuple[VariantData, list[Figure], list[dict[str, Any]], Any]]:
    """Per variant: its figures, summary rows and Kendall tau."""
    out = []
    for variant in data.variants:
        figs: list[Figure] = []
        tau = None
        if variant.flatness:
            figs.append(Figure("Flatness", "Local energy", flatness_bands(variant.labels, variant.minima,
                                                                          variant.flatness, variant.binary)))
            scatter, tau = flatness_scatter(variant.minima, key="label", text="tag", order=variant.labels, static=True)
            figs.append(Figure("Flatness", "Local energy vs test error", scatter))
        if variant.sharpness:
            scatter, _ = sharpness_scatter(variant.minima, key="label", text="tag", order=variant.labels, static=True)
            figs.append(Figure("Sharpness", "Top Hessian eigenvalue vs test error", scatter))
        kinds = [k for k in PATH_KINDS if any(p["kind"] == k for p in variant.paths)]
        for kind in kinds:
            figs.append(Figure("Paths", f"{KIND_LABELS.get(kind, kind)} paths",
                               barrier_profiles(variant.labels, variant.paths, kind)))
        if kinds:
            figs.append(Figure("Paths", "Barrier heights", barrier_heights(variant.labels, variant.paths, kinds)))
        if variant.distances:
            tags = variant.distances["tags"]
            for metric, matrix in variant.distances["matrices"].items():
                label = METRIC_LABELS.get(metric, metric)
                heatmap = matrix_heatmap(matrix, tags, f"Distances: {label}", static=True,
                                         unit=METRIC_UNITS.get(metric))
                figs.append(Figure("Distances", label, heatmap))
        if any(p["kind"] == "one_bend" for p in variant.paths):
            figs.append(Figure("One-bend paths", "Bend distances", bend_distances(variant.paths)))
        out.append((variant, figs, summary_rows(variant), tau))
    return out


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body{font-family:Inter,system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;
color:#1f2430;padding:0 16px} h1{font-size:26px} h2{margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:12px 0;font-size:14px} td,th{border:1px solid #ddd;padding:4px 8px;
text-align:left} th{background:#f4f5f7} .pass{color:#1b7f3b;font-weight:600} .fail{color:#b3261e;font-weight:600}
.figure{margin:16px 0} .meta{color:#666;font-size:13px} pre{background:#f4f5f7;padding:8px;overflow:auto}
"""


def render_html(data: ReportData) -> tuple[str, int]:
    """The whole report as one self-contained HTML page; returns (html, number of figures)."""
    import json

    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    study = data.study
    parts = [f"<h1>Study {html.escape(study['name'])}</h1>",
             f"<p class='meta'>id {study['id']} &middot; state {study['state']} &middot; "
             f"{study['steps_done']}/{study['steps_total']} steps &middot; created {study['created_at']}</p>"]
    if data.missing:
        parts.append(f"<p class='fail'>Unfinished: {len(data.missing)} steps have no output yet "
                     f"({html.escape(', '.join(data.missing[:6]))}{' ...' if len(data.missing) > 6 else ''}).</p>")
    n_figures = 0
    for variant, figs, rows, _tau in build_figures(data):
        if variant.name:
            parts.append(f"<h2>Variant {html.escape(variant.name)}</h2>")
        parts.append("<h2>Summary</h2>")
        mark = {True: "<span class='pass'>yes</span>", False: "<span class='fail'>no</span>", None: ""}
        parts.append("<table><thead><tr><th>check</th><th>value</th><th>holds</th><th>note</th></tr></thead><tbody>"
                     + "".join(f"<tr><td>{html.escape(r['check'])}</td><td>{html.escape(r['value'])}</td>"
                               f"<td>{mark[r['passed']]}</td><td>{html.escape(r['detail'])}</td></tr>" for r in rows)
                     + "</tbody></table>")
        parts.append("<h2>Minima</h2>" + _table(
            ["minimum", "sampler", "seed", "id", "epochs run", "train error", "test error", "local energy (max sigma)"],
            [[m["tag"], m["label"], m["seed"], m["id"], m.get("epochs_run"), _pct(m["train_error"]),
              _pct(m["test_error"]), _pct(m["local_energy"])] for m in variant.minima]))
        section = None
        for fig in figs:
            if fig.section != section:
                section = fig.section
                parts.append(f"<h2>{html.escape(section)}</h2>")
            parts.append("<div class='figure'>" + pio.to_html(fig.figure, include_plotlyjs=False, full_html=False,
                                                                config={"displaylogo": False}) + "</div>")
            n_figures += 1
    parts.append("<h2>Spec</h2><pre>" + html.escape(json.dumps(study["spec"], indent=2)) + "</pre>")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Toroid study {html.escape(study['name'])}"
            f"</title><style>{_CSS}</style><script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
            + "\n".join(parts) + "</body></html>")
    return page, n_figures


def csv_tables(data: ReportData) -> dict[str, list[list[Any]]]:
    """Every number of the report as tables (first row: header), keyed by file name."""
    tables: dict[str, list[list[Any]]] = {
        "minima.csv": [["variant", "minimum", "sampler", "seed", "id", "epochs_run", "train_error", "test_error",
                        "local_energy_max_sigma"]],
        "flatness.csv": [["variant", "minimum", "sigma", "mean", "std", "stderr", "samples", "capped"]],
        "distances.csv": [["variant", "metric", "a", "b", "distance"]],
        "paths.csv": [["variant", "pair_type", "kind", "a", "b", "segment", "x", "distance", "train_error",
                       "test_error", "train_loss", "test_loss"]],
        "barriers.csv": [["variant", "pair_type", "kind", "a", "b", "barrier", "test_barrier", "length",
                          "distance_to_a", "distance_to_b"]],
        "summary.csv": [["variant", "check", "value", "holds", "note"]],
    }
    if any(variant.sharpness for variant in data.variants):
        tables["sharpness.csv"] = [["variant", "minimum", "top_eigenvalue", "residual", "iterations", "trace",
                                    "trace_stderr", "probes", "samples", "parameters", "train_loss"]]
    for variant in data.variants:
        v = variant.name
        for tag, sh in variant.sharpness.items():
            tables["sharpness.csv"].append([v, tag, *(sh.get(c) for c in (
                "top_eigenvalue", "residual", "iterations", "trace", "trace_stderr", "probes", "samples",
                "parameters", "train_loss"))])
        for m in variant.minima:
            tables["minima.csv"].append([v, m["tag"], m["label"], m["seed"], m["id"], m.get("epochs_run"),
                                         m["train_error"], m["test_error"], m["local_energy"]])
        for tag, le in variant.flatness.items():
            for i, sigma in enumerate(le.get("sigmas") or []):
                tables["flatness.csv"].append([v, tag, sigma, le["mean"][i], le["std"][i], le["stderr"][i],
                                               (le.get("samples") or [None] * (i + 1))[i],
                                               (le.get("capped") or [None] * (i + 1))[i]])
        if variant.distances:
            tags = variant.distances["tags"]
            for metric, matrix in variant.distances["matrices"].items():
                for i in range(len(tags)):
                    for j in range(i + 1, len(tags)):
                        tables["distances.csv"].append([v, metric, tags[i], tags[j], matrix[i][j]])
        for p in variant.paths:
            d = p["data"]
            segments = d["profiles"] if "profiles" in d else [d]
            for s, prof in enumerate(segments):
                n = len(prof["train_error"])
                for i in range(n):
                    tables["paths.csv"].append([
                        v, p["type"], p["kind"], p["a"], p["b"], s, prof["x"][i],
                        (prof.get("distance") or [None] * n)[i],
                        prof["train_error"][i], prof["test_error"][i], (prof.get("train_loss") or [None] * n)[i],
                        (prof.get("test_loss") or [None] * n)[i]])
            test_barrier = d.get("test_barrier")
            if test_barrier is None and "profiles" in d:
                test_barrier = max(max(seg["test_error"]) for seg in d["profiles"])
            tables["barriers.csv"].append([v, p["type"], p["kind"], p["a"], p["b"], d["barrier"], test_barrier,
                                           d.get("length"), d.get("distance_to_a"), d.get("distance_to_b")])
        for r in summary_rows(variant):
            tables["summary.csv"].append([v, r["check"], r["value"], r["passed"], r["detail"]])
    return tables


def _csv_text(rows: list[list[Any]]) -> str:
    """The rows as CSV, the first as the header; names a spreadsheet would run as formulas are written as text
    (``toroid.backend.services.tables``)."""
    return csv_text(rows[0], rows[1:]) if rows else ""


def combined_csv(data: ReportData) -> str:
    """All tables in one CSV: a first column ``table`` names the table, then its header row and rows."""
    rows: list[list[Any]] = []
    for name, table in csv_tables(data).items():
        stem = name.removesuffix(".csv")
        rows.append(["table", *table[0]])
        rows.extend([stem, *row] for row in table[1:])
    return _csv_text(rows)


def report_zip(data: ReportData) -> bytes:
    """report.html plus every CSV table, zipped."""
    page, _ = render_html(data)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("report.html", page)
        for name, table in csv_tables(data).items():
            archive.writestr(name, _csv_text(table))
    return buffer.getvalue()


def write_report(data: ReportData, out: Path) -> list[Path]:
    """Write report.html and the CSV tables into ``out``; returns the paths written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    page, _ = render_html(data)
    written = [out / "report.html"]
    written[0].write_text(page)
    for name, table in csv_tables(data).items():
        path = out / name
        path.write_text(_csv_text(table))
        written.append(path)
    return written
