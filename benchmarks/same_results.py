"""The md5 of each results.json without its "versions", which name the code by a hash of its source: two
versions of the code wrote the same figures where these agree.

    python benchmarks/same_results.py RESULTS.json ...
"""

import hashlib
import json
import sys


def main():
    for f in sys.argv[1:]:
        with open(f) as fh:
            doc = json.load(fh)
        doc.pop("versions")
        print(hashlib.md5(json.dumps(doc, sort_keys=True).encode()).hexdigest(), f, "without versions")


if __name__ == "__main__":
    main()
