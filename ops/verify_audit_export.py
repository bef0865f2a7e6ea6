#!/usr/bin/env python3
"""Verify a sofiia-console audit export (NDJSON) against docs/audit-format.md.

Standard library only. Usage:

    verify_audit_export.py EXPORT.ndjson [--anchor PREV_HASH] [--expect SEQ:HASH]

Reads the export (or standard input when EXPORT is "-"), checks that seq numbers are
consecutive, that every prev_hash is the previous event's hash, and that every hash is
SHA-256(prev_hash bytes || canonical form). The first event's prev_hash must be 64 zeros when the
export starts at seq 1, equal the checkpoint's hash when the export begins with a checkpoint line
(the trail was pruned by retention: the first event must then be the one after the checkpoint),
and equal --anchor when one is given. With --expect SEQ:HASH (a head recorded earlier), the
export must also hold that event (or begin with that checkpoint) with that hash: a chain whose
tail was cut, or that was replaced by another valid chain, fails. Prints a one-line JSON verdict
and exits 0 when valid, 1 when not, 2 on unreadable input.
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


def parse_expect(text):
    """SEQ:HASH as audit verify reports head_seq and head_hash, or None when malformed."""
    seq, _, digest = text.partition(":")
    try:
        if int(seq) < 1 or len(bytes.fromhex(digest)) != 32:
            return None
        return int(seq), digest.lower()
    except ValueError:
        return None


def expectation_verdict(expect, last_seq, seen):
    """None when the expected event was found with its hash, else why not."""
    seq, digest = expect
    if seen is not None:
        return None if seen == digest else {"seq": seq, "reason": "the expected event has another hash: the chain was rewritten or replaced"}
    if last_seq is None or seq > last_seq:
        return {"seq": seq, "reason": "the export ends before the expected event: its tail was cut"}
    return {"seq": seq, "reason": "the export starts after the expected event: it cannot be checked"}


def verify(lines, anchor=None, expect=None):
    seen = None
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
            if expect is not None and expect[0] == previous_seq:
                seen = previous_hash.lower()
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
        if expect is not None and expect[0] == seq:
            seen = stated.lower()
        count += 1
    if expect is not None:
        problem = expectation_verdict(expect, previous_seq, seen)
        if problem is not None:
            return False, count, problem
    facts = {"head_seq": previous_seq, "head_hash": previous_hash}
    if checkpoint is not None:
        facts["checked_from_seq"] = checkpoint["seq"] + 1
    return True, count, facts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", help="NDJSON export file, or - for standard input")
    parser.add_argument("--anchor", help="expected prev_hash of the first event")
    parser.add_argument("--expect", help="SEQ:HASH of an event the chain must still hold")
    args = parser.parse_args()
    expect = None
    if args.expect is not None:
        expect = parse_expect(args.expect)
        if expect is None:
            print(json.dumps({"valid": False, "reason": "--expect must be SEQ:HASH (a seq and 64 hex digits)"}))
            return 2
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
    valid, count, facts = verify(lines, args.anchor, expect)
    print(json.dumps({"valid": valid, "events": count, **facts}))
    return 0 if valid else 1


if __name__ == "__main__":
    sys.exit(main())
