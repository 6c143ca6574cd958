#!/usr/bin/env bash
# The container image's size as the sum of its layers, without building the
# image: the distroless base's layers, as its published manifest lists them,
# plus the one layer the Dockerfile adds (the static binary, measured).
#
#   scripts/image-size.sh out/linux_amd64/queue2bucket
#   scripts/image-size.sh out/linux_arm64/queue2bucket
#
# (the binaries from `docker buildx build --platform linux/amd64,linux/arm64
# --target binary --output type=local,dest=out .`, or any static build of
# queue2bucket for x86_64 or aarch64; the architecture is read from the ELF
# header.)
#
# The base is the index digest the Dockerfile's runtime stage pins (so this
# follows a refresh of the pin): the script reads that index from the registry,
# checks it against the digest, takes the architecture's manifest, and sums
# its layers' sizes (compressed, as the manifest states them; that is what a
# pull transfers) and their unpacked sizes (each layer downloaded, checked
# against its digest, and decompressed: what the image occupies unpacked).
# The binary's layer is measured as a tar of usr/local/bin/queue2bucket
# (ustar headers, 512-byte records), and gzip -6 of that tar stands in for
# its compressed size. Prints one line per quantity, then the two sums.
#
# Needs curl, jq, gzip, sha256sum, tar, od and anonymous HTTPS access to
# gcr.io (or DISTROLESS_REGISTRY, a mirror with the same API, e.g.
# https://mirror.gcr.io). Without the network, set BASE_COMPRESSED_BYTES and
# BASE_UNCOMPRESSED_BYTES to the base's sizes from an earlier run for the
# same digest and architecture (the CI image job prints them); the script
# never substitutes a size of its own.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "image-size: $*" >&2
  exit 1
}

[ $# -eq 1 ] || fail "usage: $0 <static queue2bucket binary>"
bin=$1
[ -f "$bin" ] || fail "$bin does not exist"
for tool in curl jq gzip sha256sum tar od; do
  command -v "$tool" >/dev/null || fail "$tool is not installed"
done

# Little-endian unsigned integer of $2 bytes at offset $1 of the binary.
elf_u() { od -An -t "u$2" -j "$1" -N "$2" "$bin" | tr -d ' \n'; }

[ "$(head -c 4 "$bin" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ] || fail "$bin is not an ELF file"
[ "$(elf_u 4 1)" = 2 ] || fail "$bin is not a 64-bit ELF file"
case $(elf_u 18 2) in
  62) arch=amd64 ;;   # EM_X86_64
  183) arch=arm64 ;;  # EM_AARCH64
  *) fail "$bin is neither x86_64 nor aarch64 (e_machine $(elf_u 18 2))" ;;
esac
# Static: no program header of type PT_INTERP (3), i.e. no dynamic loader.
phoff=$(elf_u 32 8) phentsize=$(elf_u 54 2) phnum=$(elf_u 56 2)
for ((i = 0; i < phnum; i++)); do
  [ "$(elf_u $((phoff + i * phentsize)) 4)" != 3 ] ||
    fail "$bin is dynamically linked (it names an interpreter); distroless static has no libc for it"
done

from=$(grep -m1 -oE '^FROM gcr\.io/distroless/static-debian12:[a-z-]+@sha256:[0-9a-f]{64}' Dockerfile) ||
  fail "the Dockerfile's runtime stage is not gcr.io/distroless/static-debian12 pinned by digest"
base=${from#FROM }
index_digest=${base##*@}
repo=distroless/static-debian12

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ -n "${BASE_COMPRESSED_BYTES:-}" ] || [ -n "${BASE_UNCOMPRESSED_BYTES:-}" ]; then
  [[ ${BASE_COMPRESSED_BYTES:-} =~ ^[0-9]+$ && ${BASE_UNCOMPRESSED_BYTES:-} =~ ^[0-9]+$ ]] ||
    fail "set both BASE_COMPRESSED_BYTES and BASE_UNCOMPRESSED_BYTES (bytes), or neither"
  base_gz=$BASE_COMPRESSED_BYTES base_raw=$BASE_UNCOMPRESSED_BYTES
  base_note="given in BASE_COMPRESSED_BYTES / BASE_UNCOMPRESSED_BYTES"
else
  registry=${DISTROLESS_REGISTRY:-https://gcr.io}
  token=
  # GET /v2/<repo>/<path> into file $3 with Accept $2; one anonymous token
  # exchange if the registry asks for it (gcr.io serves public images without).
  fetch() {
    local code auth realm service
    code=$(curl -sS -L --retry 3 -o "$3" -w '%{http_code}' -H "Accept: $2" \
      ${token:+-H "Authorization: Bearer $token"} "$registry/v2/$repo/$1") || fail "cannot reach $registry"
    if [ "$code" = 401 ] && [ -z "$token" ]; then
      auth=$(curl -sS -o /dev/null -D - -H "Accept: $2" "$registry/v2/$repo/$1" | tr -d '\r' |
        sed -n 's/^[Ww][Ww][Ww]-[Aa]uthenticate: *Bearer *//p')
      realm=$(sed -n 's/.*realm="\([^"]*\)".*/\1/p' <<<"$auth")
      service=$(sed -n 's/.*service="\([^"]*\)".*/\1/p' <<<"$auth")
      [ -n "$realm" ] || fail "$registry asks for credentials for $repo"
      token=$(curl -fsS -G "$realm" --data-urlencode "service=$service" \
        --data-urlencode "scope=repository:$repo:pull" | jq -r '.token // .access_token')
      fetch "$@"
      return
    fi
    [ "$code" = 200 ] || fail "$registry/v2/$repo/$1: HTTP $code"
  }
  # The file $2 must hash to digest $1.
  check() { [ "sha256:$(sha256sum "$2" | cut -d' ' -f1)" = "$1" ] || fail "$registry sent content that does not match $1"; }

  fetch "manifests/$index_digest" 'application/vnd.oci.image.index.v1+json,application/vnd.docker.distribution.manifest.list.v2+json' "$tmp/index"
  check "$index_digest" "$tmp/index"
  manifest_digest=$(jq -r --arg arch "$arch" \
    '[.manifests[] | select(.platform.os == "linux" and .platform.architecture == $arch)][0].digest // empty' "$tmp/index")
  [ -n "$manifest_digest" ] || fail "$base has no linux/$arch image"
  fetch "manifests/$manifest_digest" 'application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json' "$tmp/manifest"
  check "$manifest_digest" "$tmp/manifest"

  base_gz=0 base_raw=0 layers=0
  while read -r digest size media; do
    fetch "blobs/$digest" '*/*' "$tmp/layer"
    check "$digest" "$tmp/layer"
    case $media in
      *gzip) raw=$(gzip -dc "$tmp/layer" | wc -c) ;;
      *zstd) raw=$(zstd -dc "$tmp/layer" | wc -c) ;;
      *.tar) raw=$(wc -c <"$tmp/layer") ;;
      *) fail "layer $digest has an unexpected media type $media" ;;
    esac
    base_gz=$((base_gz + size)) base_raw=$((base_raw + raw)) layers=$((layers + 1))
  done < <(jq -r '.layers[] | "\(.digest) \(.size) \(.mediaType)"' "$tmp/manifest")
  base_note="$layers layers of linux/$arch manifest $manifest_digest, from $registry"
fi

# The layer the Dockerfile adds: usr/local/bin/queue2bucket, owned by root, 0755.
mkdir -p "$tmp/root/usr/local/bin"
cp "$bin" "$tmp/root/usr/local/bin/queue2bucket"
chmod 0755 "$tmp/root/usr/local/bin/queue2bucket"
tar -C "$tmp/root" --format=ustar -b 1 --owner=0 --group=0 --numeric-owner -cf "$tmp/binary.tar" usr
bin_bytes=$(wc -c <"$bin")
layer_raw=$(wc -c <"$tmp/binary.tar")
layer_gz=$(gzip -6 -n -c "$tmp/binary.tar" | wc -c)

human() { awk -v b="$1" 'BEGIN { printf "%d bytes (%.2f MiB, %.2f MB)", b, b / 1048576, b / 1000000 }'; }
echo "platform:                  linux/$arch"
echo "base:                      $base"
echo "                           ($base_note)"
echo "base, compressed:          $(human "$base_gz")"
echo "base, unpacked:            $(human "$base_raw")"
echo "binary:                    $(human "$bin_bytes")"
echo "binary layer, unpacked:    $(human "$layer_raw")"
echo "binary layer, gzip -6:     $(human "$layer_gz")"
echo "image, unpacked (sum):     $(human $((base_raw + layer_raw)))"
echo "image, compressed (sum):   $(human $((base_gz + layer_gz)))"
