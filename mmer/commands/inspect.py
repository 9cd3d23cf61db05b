"""``mmer inspect {casme3,4dme,xdf,flowimages} PATH``: counts, durations, stream rates and defects."""

from __future__ import annotations

import argparse
import sys

from mmer.commands._output import print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="summarise a dataset and list every defect",
        description="Count subjects, videos, events and classes; give durations and stream rates of the "
        "recordings with media; list every defect found and what was done about it. Works on an "
        "annotations-only folder.",
    )
    parser.add_argument("kind", choices=["casme3", "4dme", "xdf", "flowimages"], help="dataset reader")
    parser.add_argument("path", help="dataset folder or .xdf file")
    parser.add_argument("--subjects", nargs="+", metavar="S", help="only these subjects")
    parser.add_argument("--videos", nargs="+", metavar="V", help="only these videos")
    parser.add_argument("--salvage", action="store_true", help="xdf: read the intact chunks of a damaged file")
    parser.add_argument("--plot", metavar="PNG", help="also write an overview figure (classes, event lengths, defects)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mmer.replay import describe, open_dataset

    options = {"salvage": True} if args.salvage and args.kind == "xdf" else {}
    dataset = open_dataset(args.kind, args.path, subjects=args.subjects, videos=args.videos, **options)
    report = describe(dataset, progress=not args.json)
    if args.plot:
        from mmer.replay._plot import plot_summary

        report["plot"] = str(plot_summary(dataset, report, args.plot))
    if args.json:
        print_json(report)
    else:
        _print_text(report)
    return 0


def _print_text(report: dict) -> None:
    out = sys.stdout
    out.write(f"{report['kind']} dataset at {report['path']}\n")
    if "samples" in report:
        out.write(f"  subjects {report['subjects']}, samples {report['samples']} ({report['with_apex']} with apex)\n")
    else:
        out.write(f"  subjects {report['subjects']}, videos {report['videos']}, "
                  f"recordings with media {report.get('recordings_with_media', 0)}\n")
    ev = report["events"]
    out.write(f"  events: me {ev['me']}, mae {ev['mae']}, blink {ev['blink']}\n")
    for name, counts in report.get("parts", {}).items():
        if not counts["subjects"]:
            continue
        e = counts["events"]
        out.write(f"  part {name}: {counts['subjects']} subjects, me {e['me']}, mae {e['mae']}, blink {e['blink']}, "
                  f"{counts['recordings_with_media']} with media\n")
    if report.get("classes"):
        out.write("  classes: " + ", ".join(f"{k} {v}" for k, v in report["classes"].items()) + "\n")
    if report.get("objective_classes"):
        out.write("  objective classes: " + ", ".join(f"{k} {v}" for k, v in report["objective_classes"].items()) + "\n")
    for rec in report.get("recordings", []):
        out.write(f"  recording {rec['subject']}/{rec['video']}: {rec['duration_s']:.2f} s\n")
        for s in rec["streams"]:
            out.write(f"    {s['name']:<28} {s['type']:<11} {s['count']:>8} items  nominal {s['nominal_rate']:g} Hz"
                      f"  measured {s['measured_rate']:.2f} Hz\n")
    defects = report.get("defects", [])
    counts = report.get("defect_counts", {})
    out.write(f"  defects: {len(defects)}" + (" (" + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")" if counts else "") + "\n")
    for d in defects:
        where = "/".join(str(x) for x in (d["subject"], d["video"]) if x is not None)
        row = f" row {d['row']}" if d["row"] is not None else ""
        detail = f" [{d['detail']}]" if d.get("detail") else ""
        out.write(f"    {d['kind']:<22} {where:<14}{row}: {d['action']}{detail}\n")
