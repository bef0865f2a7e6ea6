#!/usr/bin/env python3
"""Verify a sofiia-console audit export (NDJSON) against docs/audit-format.md.

Standard library only. Usage:

    verify_audit_export.py EXPORT.ndjson [--anchor PREV_HASH]

Reads the export (or standard input when EXPORT is "-"), checks that seq numbers are
consecutive, that every prev_hash is the previous event's hash, and that every hash is
SHA-256(prev_hash bytes || canonical form). The first event's prev_hash must be 64 zeros when the
export starts at seq 1, equal the checkpoint's hash when the export begins with a checkpoint line
(the trail was pruned by retention: the first event must then be the one after the checkpoint),
and equal --anchor when one is given. Prints a one-line JSON verdict and exits 0 when valid, 1
when not, 2 on unreadable input.
"""

import argparse
import hashlib
import json
import sys

GENESIS = "0" * 64


def canonical(event):
    """The canonical form: the event without "hash", sorted keys, compact, UTF-8."""
    body = {key: value for key, value in event.items() if key != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def verify(lines, anchor=None):
    previous_seq = None
    previous_hash = None
    checkpoint = None
    count = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if number == 1 and '"checkpoint"' in line:
            try:
                checkpoint = json.loads(line)["checkpoint"]
                previous_seq, previous_hash = int(checkpoint["seq"]), str(checkpoint["hash"])
                bytes.fromhex(previous_hash)
            except (ValueError, KeyError, TypeError) as error:
                return False, count, {"line": number, "reason": f"unreadable checkpoint: {error}"}
            if anchor is not None and anchor != previous_hash:
                return False, count, {"seq": previous_seq, "reason": "the checkpoint differs from --anchor"}
            continue
        try:
            event = json.loads(line)
            seq = event["seq"]
            prev_hash = event["prev_hash"]
            stated = event["hash"]
            prev_bytes = bytes.fromhex(prev_hash)
        except (ValueError, KeyError, TypeError) as error:
            return False, count, {"line": number, "reason": f"unreadable event: {error}"}
        if previous_seq is None:
            expected_prev = anchor if anchor is not None else (GENESIS if seq == 1 else prev_hash)
        else:
            if seq != previous_seq + 1:
                return False, count, {"seq": previous_seq + 1, "reason": "event missing or out of order"}
            expected_prev = previous_hash
        if prev_hash != expected_prev:
            return False, count, {"seq": seq, "reason": "prev_hash does not match the previous hash"}
        computed = hashlib.sha256(prev_bytes + canonical(event)).hexdigest()
        if computed != stated:
            return False, count, {"seq": seq, "reason": "hash does not match the event's content"}
        previous_seq, previous_hash = seq, stated
        count += 1
    facts = {"head_seq": previous_seq, "head_hash": previous_hash}
    if checkpoint is not None:
        facts["checked_from_seq"] = checkpoint["seq"] + 1
    return True, count, facts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", help="NDJSON export file, or - for standard input")
    parser.add_argument("--anchor", help="expected prev_hash of the first event")
    args = parser.parse_args()
    try:
        if args.export == "-":
            lines = sys.stdin.read().split("\n")
        else:
            with open(args.export, encoding="utf-8") as handle:
                # Only "\n" ends a line: str.splitlines() would also split inside values on
                # U+2028 and friends, which JSON strings may hold unescaped.
                lines = handle.read().split("\n")
    except (OSError, UnicodeDecodeError) as error:
        print(json.dumps({"valid": False, "reason": f"cannot read the export: {error}"}))
        return 2
    valid, count, facts = verify(lines, args.anchor)
    print(json.dumps({"valid": valid, "events": count, **facts}))
    return 0 if valid else 1


if __name__ == "__main__":
    sys.exit(main())
