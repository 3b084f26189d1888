"""Write the benchmark's results as JSON and as the Markdown tables the README quotes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

logger = logging.getLogger("benchmark")


def _ratio(shape: dict, old: str, new: str) -> str:
    if old not in shape or new not in shape:
        return "-"
    return f"{shape[old]['end_to_end_s'] / shape[new]['end_to_end_s']:.2f}x"


def _seconds(shape: dict, name: str, key: str = "end_to_end_s") -> str:
    failed = len(shape.get("failures", {}).get(name, []))
    note = f" ({failed} run(s) FAILED)" if failed and key == "end_to_end_s" else ""
    return (f"{shape[name][key]:.2f} s" if name in shape else "-") + note


DEPLOYMENT_NAMES = {
    "cherrypy": "archive interface under its own CherryPy server (default: 10 request threads)",
    "uwsgi-http": "archive interface under uWSGI --http-socket, 4 processes x 1 thread",
}


STAGES = ("UPLOADING", "open tar", "load metadata", "Policy Validation", "ingest files", "ingest metadata")


def _floor(shape: dict, name: str) -> float | None:
    """Our upload + the archive alone + the metadata service alone: what ours cannot beat."""
    if name not in shape:
        return None
    archive = shape["floors"]["archive_x4_s" if name.startswith("ours x4") else "archive_serial_s"]
    return shape[name]["upload_s"] + archive + shape["floors"]["metadata_s"]


def _policy(shape: dict) -> float | None:
    """The policy service alone (runs before 2026-12-07 did not measure it)."""
    return shape["floors"].get("policy_s")


def tables(results: dict) -> list[str]:
    """The Markdown lines: one table per archive deployment, then get_state and memory."""
    lines: list[str] = []
    for deployment, shapes in results["deployments"].items():
        concurrent = any("ours x4" in shape for shape in shapes.values())
        lines += [f"**{DEPLOYMENT_NAMES.get(deployment, deployment)}**", "",
                  "| shape | 0.4.1 | ours | ratio |" + (" ours x4 | ratio | ours x4, no HEAD | ratio |"
                                                          if concurrent else "") +
                  " 0.4.1 upload | ours upload | archive alone (1 at a time) |" +
                  (" archive alone (4 at once) |" if concurrent else "") +
                  " metadata alone | serial floor | ours / floor | policy alone | ours / (floor + policy) |",
                  "|---" * (12 + (5 if concurrent else 0)) + "|"]
        for label, shape in shapes.items():
            floor_value = _floor(shape, "ours")
            cells = [label, _seconds(shape, "0.4.1"), _seconds(shape, "ours"), _ratio(shape, "0.4.1", "ours")]
            if concurrent:
                cells += [_seconds(shape, "ours x4"), _ratio(shape, "0.4.1", "ours x4"),
                          _seconds(shape, "ours x4, no HEAD"), _ratio(shape, "0.4.1", "ours x4, no HEAD")]
            cells += [_seconds(shape, "0.4.1", "upload_s"), _seconds(shape, "ours", "upload_s"),
                      f"{shape['floors']['archive_serial_s']:.2f} s"]
            if concurrent:
                cells.append(f"{shape['floors']['archive_x4_s']:.2f} s")
            cells += [f"{shape['floors']['metadata_s']:.2f} s",
                      f"{floor_value:.2f} s" if floor_value else "-",
                      f"{shape['ours']['end_to_end_s'] / floor_value:.2f}" if floor_value else "-"]
            policy = _policy(shape)
            cells += [f"{policy:.2f} s" if policy is not None else "-",
                      f"{shape['ours']['end_to_end_s'] / (floor_value + policy):.2f}"
                      if floor_value and policy is not None else "-"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Stages of 'ours' (seconds from a stage's first event to the next one's, medians), beside the "
              "archive alone:", "", "| deployment | shape | " + " | ".join(STAGES) + " | archive alone |",
              "|---" * (len(STAGES) + 3) + "|"]
    for deployment, shapes in results["deployments"].items():
        for label, shape in shapes.items():
            stages = shape.get("ours", {}).get("stages_s", {})
            lines.append(f"| {deployment} | {label} | " + " | ".join(
                f"{stages[task]:.2f}" if task in stages else "-" for task in STAGES)
                + f" | {shape['floors']['archive_serial_s']:.2f} |")
    lines.append("")
    states = results.get("get_state") or {}
    if states.get("0.4.1") and states.get("ours"):
        lines += ["| get_state | 0.4.1 req/s | ours req/s | ratio | 0.4.1 p50 / p99 | ours p50 / p99 |",
                  "|---|---|---|---|---|---|"]
        for index, clients in enumerate((1, 16)):
            old, new = states["0.4.1"][index], states["ours"][index]
            lines.append(f"| {clients} client(s) | {old['rps']:.0f} | {new['rps']:.0f} | "
                         f"{new['rps'] / old['rps']:.2f}x | {old['p50_ms']:.1f} / {old['p99_ms']:.1f} ms | "
                         f"{new['p50_ms']:.1f} / {new['p99_ms']:.1f} ms |")
        lines.append("")
    lines += ["Peak RSS (MB), web server / largest worker process:", "", "| deployment | shape | 0.4.1 | ours |",
              "|---|---|---|---|"]
    for deployment, shapes in results["deployments"].items():
        for label, shape in shapes.items():
            cells = [f"{shape[name]['web_rss_mb']:.0f} / {shape[name]['worker_rss_mb']:.0f}" if name in shape else "-"
                     for name in ("0.4.1", "ours")]
            lines.append(f"| {deployment} | {label} | " + " | ".join(cells) + " |")
    return lines


def write_results(results: dict, out: Path) -> None:
    """Write ``results.json`` and ``results.md`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    machine = results["machine"]
    header = [f"Measured on {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
              f"Python {machine['python']}, Linux {machine['kernel']}; {results['runs']} run(s) per shape, medians.",
              f"Command: `{results['command']}`", ""]
    lines = header + tables(results)
    (out / "results.md").write_text("\n".join(lines) + "\n")
    logger.info("results in %s\n%s", out, "\n".join(lines))
