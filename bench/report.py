"""The benchmark's report: results.md (tables, then every figure), results.png (bars), and
the terminal's summary, from a run's Results."""

from __future__ import annotations

import itertools
from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text

from .model import (
    ITEMS,
    REQUESTS,
    SETTLE_SECONDS,
    SHARE,
    STEP_06,
    VARIANTS,
    Figures,
    Results,
    threads,
)


def share(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.0%}"


def multiple(ratio: float | None, decimals: int = 2) -> str:
    return "—" if ratio is None else f"{ratio:.{decimals}f}x"


def percent_and_multiple(results: Results, variant: str, request: str, connections: int) -> str:
    limit = results.ratio(variant, request, "raw", connections)
    sync = results.ratio(variant, request, "sync", connections)
    parts = [
        share(limit) if limit is not None else "",
        multiple(sync, 1) if sync is not None else "",
    ]
    return ", ".join(p for p in parts if p) or "—"


def step_06s(results: Results) -> list[str]:
    """The step 06 variants of the run, when step 05 (what they are compared with) is in it."""
    keys = results.options.variants
    return [key for key in keys if key in STEP_06] if "05" in keys else []


def tail(figures: Figures) -> str:
    """p99 as a multiple of p50: how much longer the slowest wait than the typical request."""
    return f"{figures.p99_ms / figures.p50_ms:.1f}x" if figures.p50_ms else "—"


def tail_and_errors(figures: Figures, seconds: int) -> str:
    if not figures.requests_per_second:
        return f"no answer in {seconds} s"
    return f"{tail(figures)}, {figures.errors} errors"


def markdown_title() -> str:
    return "# Benchmark: the references against the raw limit and the sync baseline"


def markdown(results: Results) -> str:
    options = results.options
    variants = [VARIANTS[key] for key in options.variants]
    levels = options.connections
    clients = " and ".join(f"{n:,}" for n in levels)
    lines = [
        markdown_title(),
        "",
        results.machine,
        "",
        f"One uvicorn worker per variant (step 06's: as many as its name says) on 127.0.0.1, "
        f"{ITEMS:,} items"
        + (
            f" (from step 05 on: the bench account's {ITEMS:,} of {ITEMS * SHARE:,}, one in "
            f"{SHARE}, other accounts' in between)"
            if any(VARIANTS[key].step >= "05" for key in options.variants)
            else ""
        )
        + f", `wrk -t{threads(levels[0])} -c{levels[0]} -d{options.duration}s` per request"
        + (f" at {clients} client connections" if len(levels) > 1 else "")
        + (f" after {options.warmup} s of warm-up" if options.warmup else "")
        + (f", uvicorn's `--loop {options.loop}`" if options.loop != "auto" else "")
        + f"; {options.rounds} round{'s' if options.rounds > 1 else ''}, the variants in a "
        "rotating order; medians. "
        "Compare figures within one run only.",
        "",
    ]
    if options.quick:
        lines += [
            "**Quick mode**: one short round without warm-up checks that everything runs; "
            "its figures are not for comparing.",
            "",
        ]
    for connections in levels:
        at = f" at {connections:,} connections" if len(levels) > 1 else ""
        lines += comparisons(results, connections, at)
    if len(levels) > 1:
        lines += crowd(results, levels[-1])
    if results.restarts:
        lines += [
            "## Restarted",
            "",
            f"These variants had not answered a request {SETTLE_SECONDS} s after a load was "
            "over, and were restarted before the next:",
            "",
            *(f"- {restart}" for restart in results.restarts),
            "",
        ]
    lines += [
        "",
        "## Figures",
        "",
        "App CPU: the cores the app's processes used during the load (one worker can use one at "
        "most). Machine idle: the share of every core's time left unused meanwhile; none left "
        "means the machine was the limit (wrk and PostgreSQL take the rest).",
        "",
        "| request | variant | connections | requests/s | p50 (ms) | p99 (ms) | p99/p50 "
        "| of the limit | x sync | errors | app CPU (cores) | machine idle |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for request, connections, variant in itertools.product(options.requests, levels, variants):
        figures = results.median(variant.key, request, connections)
        limit = results.ratio(variant.key, request, "raw", connections)
        sync = results.ratio(variant.key, request, "sync", connections)
        lines.append(
            f"| {REQUESTS[request]} | {variant.label} | {connections:,} | "
            f"{figures.requests_per_second:,.0f} | {figures.p50_ms:.1f} | {figures.p99_ms:.1f} | "
            f"{tail(figures)} | {share(limit)} | {multiple(sync, 1)} | {figures.errors} | "
            f"{figures.app_cores:.2f} | {figures.idle:.0%} |"
        )
    return "\n".join(lines) + "\n"


def comparisons(results: Results, connections: int, at: str) -> list[str]:
    """The tables of one number of connections: against the limit and sync, step 05 against
    step 04, step 06 against step 05."""
    options = results.options
    requests = options.requests
    header = ["| " + " | ".join(REQUESTS[r] for r in requests) + " |", "|" + "---|" * len(requests)]
    lines = [
        f"## Against the limit and the sync baseline{at}",
        "",
        "Requests/s as a share of the raw limit's, then as a multiple of the sync baseline's.",
        "",
        "| variant " + header[0],
        "|---" + header[1],
    ]
    for key in options.variants:
        cells = [percent_and_multiple(results, key, r, connections) for r in requests]
        lines.append(f"| {VARIANTS[key].label} | " + " | ".join(cells) + " |")
    if {"04", "05"} <= set(options.variants):
        shares = [share(results.ratio("05", r, "04", connections)) for r in requests]
        lines += [
            "",
            f"## Step 05 against step 04{at}",
            "",
            "Requests/s of the step 05 reference as a share of step 04's (the aim: 70% or more).",
            "",
            *header,
            "| " + " | ".join(shares) + " |",
        ]
    if keys := step_06s(results):
        lines += [
            "",
            f"## Step 06 against step 05{at}",
            "",
            "Requests/s of each step 06 variant as a multiple of step 05's on one worker, "
            "straight to PostgreSQL (the aim for 2 workers through PgBouncer: 1.5x or more on "
            "GET one and the list).",
            "",
            "| variant " + header[0],
            "|---" + header[1],
        ]
        for key in keys:
            cells = [multiple(results.ratio(key, r, "05", connections)) for r in requests]
            lines.append(f"| {VARIANTS[key].label} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def crowd(results: Results, connections: int) -> list[str]:
    """The largest crowd: p99 as a multiple of p50, and the errors, of every variant."""
    requests = results.options.requests
    lines = [
        f"## A crowd of {connections:,} connections: the tail and the errors",
        "",
        "p99 as a multiple of p50 (the aim for step 06: under 10x), then the requests that "
        "failed (connections lost, timeouts, answers of 400 and above; the aim: none).",
        "",
        "| variant | " + " | ".join(REQUESTS[r] for r in requests) + " |",
        "|---|" + "---|" * len(requests),
    ]
    for key in results.options.variants:
        cells = []
        for request in requests:
            figures = results.median(key, request, connections)
            cells.append(tail_and_errors(figures, results.options.duration))
        lines.append(f"| {VARIANTS[key].label} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def summary(results: Results) -> Group:
    """The first tables of results.md, for the terminal: one per number of connections."""
    requests = results.options.requests
    tables = []
    for connections in results.options.connections:
        table = Table(
            "variant",
            *(REQUESTS[r] for r in requests),
            title=f"Requests/s at {connections:,} connections: share of the limit, x sync",
        )
        for key in results.options.variants:
            cells = (percent_and_multiple(results, key, r, connections) for r in requests)
            table.add_row(Text(VARIANTS[key].label), *cells)
        if {"04", "05"} <= set(results.options.variants):
            shares = (share(results.ratio("05", r, "04", connections)) for r in requests)
            table.add_row(Text("step 05 as a share of step 04"), *shares)
        for key in step_06s(results):
            multiples = (multiple(results.ratio(key, r, "05", connections)) for r in requests)
            table.add_row(Text(f"{VARIANTS[key].label}, x step 05"), *multiples)
        tables.append(table)
    return Group(*tables)


def plot(results: Results, path: Path) -> None:
    """Three panels (requests/s, p50, p99) a row for each number of connections, a group of
    bars per request."""
    # matplotlib is the notebooks' dependency, and slow to import: only here. No pyplot:
    # a Figure of its own draws without touching any backend a notebook may have chosen.
    from matplotlib.figure import Figure

    variants = [VARIANTS[key] for key in results.options.variants]
    levels = results.options.connections
    figure = Figure(figsize=(13, 1 + 3.4 * len(levels)), layout="constrained")
    rows = figure.subplots(len(levels), 3, squeeze=False)
    width = 0.8 / len(variants)
    metrics = (
        ("requests_per_second", "requests/s (higher is better)"),
        ("p50_ms", "p50 latency, ms"),
        ("p99_ms", "p99 latency, ms"),
    )
    requests = results.options.requests
    for axes, connections in zip(rows, levels, strict=True):
        for ax, (metric, title) in zip(axes, metrics, strict=True):
            for i, variant in enumerate(variants):
                values = [
                    getattr(results.median(variant.key, r, connections), metric) for r in requests
                ]
                positions = [
                    n + (i - (len(variants) - 1) / 2) * width for n in range(len(requests))
                ]
                ax.bar(positions, values, width, label=variant.label)
            ax.set_xticks(range(len(requests)), [REQUESTS[r] for r in requests])
            ax.set_title(f"{title}, {connections:,} connections", fontsize="medium")
    handles, labels = rows[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=min(len(variants), 5))
    figure.suptitle(f"workshop bench: {results.machine.split(' · ')[0]}", fontsize="medium")
    figure.savefig(path, dpi=110)


def write(results: Results, output: Path) -> list[Path]:
    output.mkdir(parents=True, exist_ok=True)
    table, picture = output / "results.md", output / "results.png"
    table.write_text(markdown(results), encoding="utf-8")
    plot(results, picture)
    return [table, picture]
