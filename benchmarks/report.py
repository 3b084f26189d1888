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
    return f"{shape[name][key]:.2f} s" if name in shape else "-"


def tables(results: dict) -> list[str]:
    """The Markdown lines: archive over HTTP, embedded archive, get_state, memory."""
    shapes = results["shapes"]
    lines = ["Over HTTP to the published archive interface (\"archive alone\": a lean client PUTs the same files "
             "from memory over 4 connections, the floor of 'ingest files'):", "",
             "| shape | 0.4.1 | ours | ratio | ours, no HEAD check | ratio | 0.4.1 upload | ours upload | "
             "ours files/s | ours MB/s | archive alone | cp | cp + sync | sha1sum |", "|---" * 14 + "|"]
    for label, shape in shapes.items():
        floor = shape["floors"]
        rate = (f"{shape['ours']['files_per_s']:.0f} | {shape['ours']['mb_per_s']:.0f}" if "ours" in shape
                else "- | -")
        lines.append(f"| {label} | {_seconds(shape, '0.4.1')} | {_seconds(shape, 'ours')} | "
                     f"{_ratio(shape, '0.4.1', 'ours')} | {_seconds(shape, 'ours-unconfirmed')} | "
                     f"{_ratio(shape, '0.4.1', 'ours-unconfirmed')} | {_seconds(shape, '0.4.1', 'upload_s')} | "
                     f"{_seconds(shape, 'ours', 'upload_s')} | {rate} | {floor.get('archive_put_s', 0):.2f} s | "
                     f"{floor['cp_s']:.2f} s | "
                     f"{floor['cp_sync_s']:.2f} s | {floor['sha1sum_s']:.2f} s |")
    lines += ["", "Ours with the embedded archive (0.4.1 has none: its column is the HTTP archive above):", "",
              "| shape | 0.4.1 | ours, embedded | ratio | files/s | MB/s | cp + sha1sum | ours / (cp + sha1sum) | "
              "tar -x |", "|---|---|---|---|---|---|---|---|---|"]
    for label, shape in shapes.items():
        if "ours-embedded" not in shape:
            continue
        mine, floor = shape["ours-embedded"], shape["floors"]
        both = floor["cp_s"] + floor["sha1sum_s"]
        lines.append(f"| {label} | {_seconds(shape, '0.4.1')} | {mine['end_to_end_s']:.2f} s | "
                     f"{_ratio(shape, '0.4.1', 'ours-embedded')} | {mine['files_per_s']:.0f} | "
                     f"{mine['mb_per_s']:.0f} | {both:.2f} s | {mine['end_to_end_s'] / both:.2f} | "
                     f"{floor['tar_x_s']:.2f} s |")
    states = results["get_state"]
    if states:
        lines += ["", "| get_state | 0.4.1 req/s | ours req/s | ratio | 0.4.1 p50 / p99 | ours p50 / p99 "
                  "| ours, GET / (no database) |", "|---|---|---|---|---|---|---|"]
        for index, clients in enumerate((1, 16)):
            old = states.get("0.4.1", [None, None])[index]
            new = states.get("ours", [None, None])[index]
            bare = states.get("ours, GET /", [None, None])[index]
            if old is None or new is None:
                continue
            floor = f"{bare['rps']:.0f} req/s" if bare else "-"
            lines.append(f"| {clients} client(s) | {old['rps']:.0f} | {new['rps']:.0f} | "
                         f"{new['rps'] / old['rps']:.2f}x | {old['p50_ms']:.1f} / {old['p99_ms']:.1f} ms | "
                         f"{new['p50_ms']:.1f} / {new['p99_ms']:.1f} ms | {floor} |")
    names = [name for name in ("0.4.1", "ours", "ours-embedded", "ours-unconfirmed")
             if any(name in shape for shape in shapes.values())]
    lines += ["", "Peak RSS (MB), web server / largest worker process:", "",
              "| shape | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, shape in shapes.items():
        cells = [f"{shape[name]['web_rss_mb']:.0f} / {shape[name]['worker_rss_mb']:.0f}" if name in shape else "-"
                 for name in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if results.get("archive_limit"):
        limits = ", ".join(f"{name}: {rate:.0f} files/s" for name, rate in results["archive_limit"].items())
        lines += ["", f"The archive interface's own limit for 4 KiB files (a lean client that only sends): {limits}."]
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
