#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
# Parses Prometheus text exposition from stdin with the official Python client's parser
# (Debian python3-prometheus-client) and prints it as JSON for the metrics test:
#   {"family": {"type": "counter", "samples": [{"name": ..., "labels": {...}, "value": ...}]}}
# Exits 1 with the parser's message if the text does not parse.
import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families

text = sys.stdin.read()
out = {}
try:
    for family in text_string_to_metric_families(text):
        samples = []
        for s in family.samples:
            v = s.value
            samples.append({"name": s.name, "labels": s.labels,
                            "value": v if math.isfinite(v) else str(v)})
        if family.name in out:
            raise ValueError("family %s appears twice" % family.name)
        out[family.name] = {"type": family.type, "help": family.documentation,
                            "samples": samples}
except Exception as e:  # the parser raises ValueError and friends
    print("parse error: %s" % e, file=sys.stderr)
    sys.exit(1)
json.dump(out, sys.stdout)
