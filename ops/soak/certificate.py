"""The certificate of a soak: the checker's findings with the run's figures, as JSON and as a readable report."""
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ops.soak.checker import Check, Evidence, Finding, certificate_checks, findings_take, provider_ledger_check
from ops.soak.history import FaultRecord, HistoryData, Operation, Outcome, spans_overlapping
from ops.soak.readback import ReadBack


def faults_overlapping(faults: list[FaultRecord]) -> int:
    """How many of the faults held at the same time as at least one other (from their injection until healed)."""
    return spans_overlapping([(fault.started_at, fault.healed_at or fault.started_at) for fault in faults])


@dataclass
class Certificate:
    clean: bool
    run: dict[str, Any]
    figures: dict[str, Any]
    faults: dict[str, Any]
    checks: list[Finding]
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)

    def write(self, directory: Path) -> tuple[Path, Path]:
        (directory / "certificate.json").write_text(self.to_json())
        (directory / "report.txt").write_text(self.render() + "\n")
        return directory / "certificate.json", directory / "report.txt"

    def render(self) -> str:
        run, figures, faults = self.run, self.figures, self.faults
        started = datetime.fromtimestamp(run["started_at"], tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        lines = [
            f"== soak certificate: {'CLEAN' if self.clean else 'NOT CLEAN'}",
            f"  run            seed {run['seed']}, {run['minutes']:g} min at {run['rate']:g} checkouts/s, started {started}",
            f"  command        {run['command']}",
            (
                f"  checkouts      {figures['customers']} customers: {figures['acknowledged']} acknowledged, {figures['refused']} refused, "
                f"{figures['timed_out']} without a definite answer (cart or checkout); {figures['requests']} requests in all"
            ),
            f"  orders         {figures['orders']} ({', '.join(f'{s} {n}' for s, n in sorted(figures['statuses'].items())) or 'none'})",
            f"  faults         {faults['injected']} injected ({faults['failed']} failed), {faults['overlapping']} overlapping another; "
            + ", ".join(f"{name} {count}" for name, count in sorted(faults["by_kind"].items())),
            (
                f"  zero-loss      lost {figures['lost']}, duplicated {figures['duplicated']}, stranded {figures['stranded']}, "
                f"ledger mismatches {figures['ledger_mismatches']}, stock {'conserved' if figures['stock_conserved'] else 'NOT conserved'}"
            ),
            (
                f"  settled        the last order {figures['settled_seconds_after_last_heal']} s after the last fault healed, "
                f"quiet period included (bound {run['settle_within_seconds']:.0f} s)"
            ),
        ]
        for finding in self.checks:
            mark = "ok  " if finding.passed else "FAIL"
            shown = ", ".join(f"{name} {value}" for name, value in finding.figures.items())
            lines.append(f"  [{mark}] {finding.name:<13} {finding.claim}" + (f" ({shown})" if shown else ""))
            lines += [f"         unread: {source}" for source in finding.unread]
            lines += [f"         - {violation}" for violation in finding.violations]
            if finding.count > len(finding.violations):
                lines.append(f"         ... and {finding.count - len(finding.violations)} more")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def certificate_build(history: HistoryData, readback: ReadBack, *, ledger_check: Check = provider_ledger_check) -> Certificate:
    """Judge a run from its history and read-backs alone."""
    evidence = Evidence(history, readback)
    findings = findings_take(evidence, certificate_checks(ledger_check=ledger_check))
    by_name = {finding.name: finding for finding in findings}
    outcomes: Counter = Counter()
    for operations in evidence.requests.values():
        checkouts = operations.get(Operation.CHECKOUT.value) or operations.get(Operation.CART.value, [])
        states = {request.outcome for request in checkouts}
        for outcome in (Outcome.ACKNOWLEDGED, Outcome.TIMED_OUT, Outcome.REFUSED):
            if outcome.value in states:
                outcomes[outcome.value] += 1
                break
    injected = [fault for fault in history.faults if fault.injected]
    run = history.run
    figures = {
        "customers": len(evidence.requests),
        "requests": len(history.requests),
        "acknowledged": outcomes[Outcome.ACKNOWLEDGED.value],
        "refused": outcomes[Outcome.REFUSED.value],
        "timed_out": outcomes[Outcome.TIMED_OUT.value],
        "orders": len(evidence.orders),
        "statuses": dict(Counter(order["status"] for order in evidence.orders)),
        "lost": by_name["acknowledged"].figures["lost"],
        "duplicated": by_name["acknowledged"].figures["duplicated"] + by_name["unanswered"].count,
        "stranded": by_name["settled"].figures["stranded_orders"] + by_name["settled"].figures["unpublished_rows"],
        "ledger_mismatches": by_name["ledger"].count,
        "stock_conserved": by_name["stock"].passed,
        "settled_seconds_after_last_heal": by_name["settled"].figures["settled_seconds_after_last_heal"],
    }
    faults = {
        "scheduled": len(run.schedule),
        "injected": len(injected),
        "failed": sum(1 for fault in history.faults if fault.error),
        "overlapping": faults_overlapping(injected),
        "by_kind": dict(Counter(fault.name for fault in injected)),
        "errors": [f"{fault.name} at +{fault.planned_at:.0f}s: {fault.error}" for fault in history.faults if fault.error],
        "excluded_kinds": run.excluded_kinds,
    }
    notes = [f"not certified, source unreadable: {source}: {reason}" for source, reason in readback.unreadable.items()]
    if history.end is None or history.end.interrupted:
        notes.append("the run did not finish (interrupted): the certificate covers what it did")
    if faults["failed"]:
        notes.append(f"{faults['failed']} faults failed to inject or undo: see faults.errors")
    record = {
        "seed": run.seed, "rate": run.rate, "minutes": run.minutes, "started_at": run.started_at,
        "settle_within_seconds": run.settle_within_seconds, "command": run.command, "fault_kinds": run.fault_kinds,
    }  # fmt: skip
    interrupted = history.end is None or history.end.interrupted
    clean = all(finding.passed for finding in findings) and not interrupted
    return Certificate(clean=clean, run=record, figures=figures, faults=faults, checks=findings, notes=notes, interrupted=interrupted)
