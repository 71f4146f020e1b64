#!/usr/bin/env bash
# Installs every Debian package mammopatch needs, idempotently: it asks dpkg which
# packages are missing, runs `apt-get update` once only when something must be
# installed, then installs just those. Safe to run on every build.
#
# Usage: scripts/setup-deps.sh [--with-python] [--with-browser] [--with-slurm] [--with-serial-hdf5]
#   (default)      build + runtime: compilers, CMake, Open MPI, parallel HDF5, GDCM,
#                  oneDNN, OpenBLAS/LAPACKE, libpng, cJSON, inih, cmocka, OpenSSL
#                  + the test oracles and bench peers (Debian's python3 with numpy,
#                  pydicom, OpenCV, h5py, scikit-image, torch)
#   --with-python  oracles of later stages (Debian's sklearn, scipy)
#   --with-browser Debian's Chromium, for the test that renders the HTML report headless
#   --with-slurm   munge, slurmctld, slurmd for the real-Slurm job tests
#   --with-serial-hdf5  Debian's serial HDF5 beside the parallel one, for the test that
#                  builds as a GPU node's image (test_configure_gpu_image)
set -euo pipefail

pkgs=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  openmpi-bin libopenmpi-dev
  libhdf5-openmpi-dev hdf5-tools
  libgdcm-dev libgdcm-tools
  libdnnl-dev
  libopenblas-dev liblapacke-dev
  libpng-dev libcjson-dev libinih-dev libcmocka-dev libssl-dev
  python3 python3-numpy python3-pydicom python3-opencv python3-h5py python3-skimage python3-torch
)
for a in "$@"; do
  case "$a" in
    --with-python) pkgs+=(python3-sklearn python3-scipy python3-torchvision) ;;
    --with-browser) pkgs+=(chromium) ;;
    --with-slurm)  pkgs+=(munge slurm-wlm slurmctld slurmd slurm-client) ;;
    --with-serial-hdf5) pkgs+=(libhdf5-dev) ;;
    *) echo "setup-deps: unknown option '$a'" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${pkgs[@]}"; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$st" == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "setup-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "setup-deps: missing packages (${missing[*]}); run as root or install them yourself" >&2
  exit 1
fi
echo "setup-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
