"""Writes the SHA-256 manifest of a folder of golden cases.

Usage: /usr/bin/python3 -B -m golden.toolkit.manifest golden/cases

The manifest, FOLDER/MANIFEST.sha256, has one line per *.safetensors file
of the folder, sorted by name, in sha256sum's format ("<64 hex digits>
<two spaces><name>"), so `cd golden/cases && sha256sum -c MANIFEST.sha256`
checks it too. The golden suite checks it with golden.CheckManifest: a
committed file that changed fails as "golden file changed", not as a
model bug. `make golden` rewrites it after regenerating the cases.
"""

import argparse
import hashlib
import os

NAME = "MANIFEST.sha256"
EXTENSION = ".safetensors"


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest(folder):
    """The manifest text of folder's *.safetensors files."""
    names = sorted(n for n in os.listdir(folder) if n.endswith(EXTENSION) and os.path.isfile(os.path.join(folder, n)))
    return "".join("%s  %s\n" % (digest(os.path.join(folder, n)), n) for n in names)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="the folder of cases, e.g. golden/cases")
    args = parser.parse_args(argv)
    text = manifest(args.folder)
    path = os.path.join(args.folder, NAME)
    with open(path, "w") as f:
        f.write(text)
    print("%s: %d files" % (path, text.count("\n")))


if __name__ == "__main__":
    main()
