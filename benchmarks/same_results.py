"""The md5 of each results.json without its "versions", which name the code by a hash of its source: two
versions of the code wrote the same figures where these agree.

    python benchmarks/same_results.py RESULTS.json ...
"""

import hashlib
import json
import sys

for f in sys.argv[1:]:
    doc = json.load(open(f))
    doc.pop("versions")
    print(hashlib.md5(json.dumps(doc, sort_keys=True).encode()).hexdigest(), f, "without versions")
