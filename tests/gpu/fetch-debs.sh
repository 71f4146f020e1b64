#!/usr/bin/env bash
# tests/gpu/fetch-debs.sh — downloads (on this Debian 12 machine, no install) the .deb files that
# tests/gpu/run.sh unpacks on a GPU machine whose image lacks them: cJSON, inih, cmocka,
# OpenSSL's libcrypto, OpenBLAS + LAPACKE (with libgfortran), each with its runtime package.
# The folder (default .gpu-debs, ignored by git, ~18 MB) travels with the tree: name it in the
# device call's `carry`.  Usage: tests/gpu/fetch-debs.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-.gpu-debs}
mkdir -p "$dir"
cd "$dir"
rm -f ./*.deb
# apt-get download writes to the current folder; as root it warns that _apt cannot write here
apt-get download libcjson-dev libcjson1 libinih-dev libinih1 libinireader0 libcmocka-dev libcmocka0 \
  libssl-dev libssl3 libopenblas0-pthread libopenblas-pthread-dev liblapacke liblapacke-dev libtmglib3 \
  libgfortran5 libquadmath0 2> >(grep -v 'unsandboxed' >&2)
ls -l ./*.deb
