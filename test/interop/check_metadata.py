#!/usr/bin/env python3
"""Checks a tufota repository folder with securesystemslib alone.

An implementation independent of the TypeScript code (and of tuf-js) reads
every metadata file under REPO/metadata and:

- recomputes every key id as sha256 of encode_canonical(key dict);
- verifies every signature over encode_canonical(signed) with
  securesystemslib.keys.verify_signature;
- checks each role's threshold of valid signatures from the keys its
  delegator trusts (root for top-level roles, the previous root too for a
  new root, the delegating targets role for delegated roles);
- checks expires against '%Y-%m-%dT%H:%M:%SZ', spec_version '1.x' and _type;
- checks timestamp -> snapshot and snapshot -> targets roles (version, and
  length and hashes where listed);
- checks the length and every hash of each listed target file on disk under
  its consistent names (DIR/HASH.NAME).

Usage: check_metadata.py REPO
Prints one JSON object; exits 1 when anything failed, 2 on a crash.
"""

import datetime
import hashlib
import json
import os
import re
import sys

from securesystemslib import formats, keys

TOP_LEVEL = ("root", "timestamp", "snapshot", "targets")
NAME = re.compile(r"^(?:(\d+)\.)?([a-z0-9][a-z0-9-]*)\.json$")


def canonical(obj):
    return formats.encode_canonical(obj).encode("utf-8")


class Checker:
    def __init__(self, repo):
        self.repo = repo
        self.metadata_dir = os.path.join(repo, "metadata")
        self.targets_dir = os.path.join(repo, "targets")
        self.failures = []
        self.summary = {
            "files": 0,
            "keyids": 0,
            "signatures": 0,
            "signaturesByScheme": {},
            "thresholds": 0,
            "targets": 0,
            "metaChecks": 0,
        }
        # name -> parsed document, and role -> {version: document}
        self.docs = {}
        self.versions = {}

    def fail(self, where, what):
        self.failures.append(f"{where}: {what}")

    # -- loading ---------------------------------------------------------

    def load(self):
        for name in sorted(os.listdir(self.metadata_dir)):
            match = NAME.match(name)
            if not match:
                continue
            path = os.path.join(self.metadata_dir, name)
            with open(path, "rb") as f:
                raw = f.read()
            try:
                doc = json.loads(raw)
            except ValueError as e:
                self.fail(name, f"not JSON: {e}")
                continue
            self.summary["files"] += 1
            self.docs[name] = (doc, raw)
            version, role = match.group(1), match.group(2)
            if version is not None:
                self.versions.setdefault(role, {})[int(version)] = doc

    def latest(self, role):
        versions = self.versions.get(role, {})
        return versions[max(versions)] if versions else None

    # -- one file ----------------------------------------------------------

    def check_common(self, name, doc, role):
        signed = doc.get("signed", {})
        expected_type = role if role in TOP_LEVEL else "targets"
        if signed.get("_type") != expected_type:
            self.fail(name, f"_type {signed.get('_type')!r}, expected {expected_type}")
        if not str(signed.get("spec_version", "")).startswith("1."):
            self.fail(name, f"spec_version {signed.get('spec_version')!r} is not 1.x")
        try:
            datetime.datetime.strptime(signed.get("expires", ""), "%Y-%m-%dT%H:%M:%SZ")
        except (TypeError, ValueError):
            self.fail(name, f"expires {signed.get('expires')!r} is not %Y-%m-%dT%H:%M:%SZ")
        match = NAME.match(name)
        if match.group(1) is not None and int(match.group(1)) != signed.get("version"):
            self.fail(name, f"version {signed.get('version')} in a file named {name}")

    def check_keyids(self, where, key_map):
        for keyid, key in key_map.items():
            computed = hashlib.sha256(canonical(key)).hexdigest()
            self.summary["keyids"] += 1
            if computed != keyid:
                self.fail(where, f"key id {keyid} recomputes as {computed}")

    def check_signatures(self, name, doc, role, trust):
        """trust: list of (key_map, role_dict) that must each be met."""
        data = canonical(doc["signed"])
        signatures = doc.get("signatures", [])
        valid = set()
        for sig in signatures:
            keyid = sig.get("keyid")
            key = None
            for key_map, _ in trust:
                if keyid in key_map:
                    key = key_map[keyid]
            if key is None:
                self.fail(name, f"signature by key {keyid} that {role} does not trust")
                continue
            key_dict = {
                "keyid": keyid,
                "keytype": key["keytype"],
                "scheme": key["scheme"],
                "keyval": {"public": key["keyval"]["public"]},
            }
            try:
                ok = keys.verify_signature(key_dict, sig, data)
            except Exception as e:  # a format error is a failure too
                self.fail(name, f"signature by {keyid} cannot be checked: {e}")
                continue
            if ok:
                valid.add(keyid)
                self.summary["signatures"] += 1
                by = self.summary["signaturesByScheme"]
                by[key["scheme"]] = by.get(key["scheme"], 0) + 1
            else:
                self.fail(name, f"invalid signature by {keyid} ({key['scheme']})")
        for key_map, role_dict in trust:
            good = [k for k in role_dict["keyids"] if k in valid and k in key_map]
            if len(good) < role_dict["threshold"]:
                self.fail(
                    name,
                    f"{len(good)} of {role_dict['threshold']} required signatures",
                )
            else:
                self.summary["thresholds"] += 1

    # -- the repository ------------------------------------------------------

    def check_roots(self):
        roots = self.versions.get("root", {})
        if 1 not in roots:
            self.fail("1.root.json", "missing")
            return
        previous = None
        for version in sorted(roots):
            name = f"{version}.root.json"
            doc = roots[version]
            self.check_common(name, doc, "root")
            signed = doc["signed"]
            self.check_keyids(name, signed.get("keys", {}))
            trust = [(signed["keys"], signed["roles"]["root"])]
            if previous is not None:
                trust.insert(0, (previous["keys"], previous["roles"]["root"]))
            self.check_signatures(name, doc, "root", trust)
            previous = signed
        if "root.json" in self.docs:
            if self.docs["root.json"][1] != self.docs[f"{max(roots)}.root.json"][1]:
                self.fail("root.json", "differs from the newest N.root.json")

    def root_trust(self, role):
        # Files of older versions may predate the newest root; any root
        # version whose role they satisfy will do. Without key rotation the
        # newest root decides.
        root = self.latest("root")["signed"]
        return [(root["keys"], root["roles"][role])]

    def check_meta(self, where, meta_name, info, raw):
        self.summary["metaChecks"] += 1
        if "length" in info and info["length"] != len(raw):
            self.fail(where, f"{meta_name} is {len(raw)} bytes, listed {info['length']}")
        for alg, digest in info.get("hashes", {}).items():
            if hashlib.new(alg, raw).hexdigest() != digest:
                self.fail(where, f"{meta_name} {alg} does not match")

    def check_top_level(self):
        for name, (doc, _) in sorted(self.docs.items()):
            match = NAME.match(name)
            role = match.group(2)
            if role not in ("timestamp", "snapshot", "targets"):
                continue
            self.check_common(name, doc, role)
            self.check_signatures(name, doc, role, self.root_trust(role))

        ts = self.docs.get("timestamp.json")
        if ts is None:
            self.fail("timestamp.json", "missing")
            return
        snap_info = ts[0]["signed"]["meta"]["snapshot.json"]
        snap_name = f"{snap_info['version']}.snapshot.json"
        if snap_name not in self.docs:
            self.fail("timestamp.json", f"names {snap_name}, which is missing")
            return
        self.check_meta("timestamp.json", snap_name, snap_info, self.docs[snap_name][1])
        for role_file, info in self.docs[snap_name][0]["signed"]["meta"].items():
            file_name = f"{info['version']}.{role_file}"
            if file_name not in self.docs:
                self.fail(snap_name, f"lists {file_name}, which is missing")
                continue
            self.check_meta(snap_name, file_name, info, self.docs[file_name][1])

    def delegator_of(self, role):
        """The newest version of a targets role that delegates to role."""
        for parent, versions in self.versions.items():
            if parent in ("root", "timestamp", "snapshot"):
                continue
            doc = versions[max(versions)]
            delegations = doc["signed"].get("delegations") or {}
            for delegated in delegations.get("roles", []):
                if delegated["name"] == role:
                    return delegations["keys"], delegated
        return None

    def check_targets_roles(self):
        seen = set()
        for role, versions in sorted(self.versions.items()):
            if role in ("root", "timestamp", "snapshot"):
                continue
            for version, doc in sorted(versions.items()):
                name = f"{version}.{role}.json"
                signed = doc["signed"]
                delegations = signed.get("delegations")
                if delegations:
                    self.check_keyids(name, delegations.get("keys", {}))
                if role != "targets":
                    self.check_common(name, doc, role)
                    found = self.delegator_of(role)
                    if found is None:
                        self.fail(name, f"no role delegates to {role}")
                    else:
                        key_map, delegated = found
                        self.check_signatures(name, doc, role, [(key_map, delegated)])
                for path, info in signed.get("targets", {}).items():
                    for alg, digest in info["hashes"].items():
                        if (path, alg, digest) in seen:
                            continue
                        seen.add((path, alg, digest))
                        self.check_target(name, path, info, alg, digest)

    def check_target(self, where, path, info, alg, digest):
        directory, base = os.path.split(path)
        file = os.path.join(self.targets_dir, directory, f"{digest}.{base}")
        try:
            with open(file, "rb") as f:
                data = f.read()
        except OSError:
            self.fail(where, f"target {path}: {file} is missing")
            return
        self.summary["targets"] += 1
        if len(data) != info["length"]:
            self.fail(where, f"target {path}: {len(data)} bytes, listed {info['length']}")
        if hashlib.new(alg, data).hexdigest() != digest:
            self.fail(where, f"target {path}: {alg} does not match {file}")

    def run(self):
        self.load()
        self.check_roots()
        if "root" in self.versions:
            self.check_top_level()
            self.check_targets_roles()
        self.summary["failures"] = self.failures
        return self.summary


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    summary = Checker(sys.argv[1]).run()
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
