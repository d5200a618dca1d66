#!/usr/bin/env bash
# Install the Debian packages the pipeline needs, only when something is missing.
# Speech engines for the offline demo corpus (festival, flite, espeak-ng), sox, and the
# public-domain text source (dict-devil).
set -euo pipefail
PACKAGES=(festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts flite espeak-ng libespeak-ng1 sox dict-devil)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing Debian packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "error: need root or sudo to apt-get install ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
