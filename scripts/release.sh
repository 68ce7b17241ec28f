#!/usr/bin/env bash
# Builds the prebuilt freshtoken for x86_64 Linux: one statically linked binary that runs on
# any x86_64 Linux without the build machine's libraries, its man pages, shell completions,
# and SHA256SUMS beside them, in target/release-dist/ (or $1).
#
# musl is used when its Rust target is installed (x86_64-unknown-linux-musl); otherwise glibc
# is linked statically (-C target-feature=+crt-static on x86_64-unknown-linux-gnu, which
# needs libc6-dev's libc.a). Either way the binary needs nothing from the host to start.
# Name resolution: freshtoken resolves the host names of its HTTP connections itself
# (crates/freshtoken/src/dns.rs: /etc/hosts, then /etc/resolv.conf's name servers; localhost
# is loopback), so the static binary never loads the host's NSS modules. Only Redis host
# names go through the C library's getaddrinfo. The TLS roots are the host's (/etc/ssl/certs),
# plus --ca-file.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/release-dist}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}

if rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
  target=x86_64-unknown-linux-musl
  flags=""
else
  target=x86_64-unknown-linux-gnu
  flags="-C target-feature=+crt-static"
fi
# Random numbers from the getrandom(2) system call alone: getrandom's default on glibc looks
# the function up with dlsym, which a static binary cannot do, and falls back to
# /dev/urandom, which an empty chroot or a minimal container does not have.
flags="$flags --cfg getrandom_backend=\"linux_getrandom\""
echo "== cargo build --release --target $target ${flags:+(RUSTFLAGS $flags)}"
# The functions that start-up and the warm paths run are laid out together
# (scripts/startup-order.sh made the list from a profile): a warm `get` touched 117 of the
# 212 64 KiB blocks of .text, and each first touch maps a whole block. lld reads the list;
# names it does not know (a list older than the code) are skipped. The list goes in by a
# name that carries its digest, so that a new list relinks, and on the binary's link line
# only (cargo rustc), so that it rebuilds nothing else. The binary is linked with its
# symbols, which the list names, and stripped when it is copied out.
# Rust links x86_64-unknown-linux-gnu with its own lld; with musl the link may be GNU ld's,
# which has no such option, so the musl build keeps the compiler's order.
order=scripts/startup-order.txt
link_args=()
if [ "$target" = x86_64-unknown-linux-gnu ]; then
  mkdir -p target/release-static
  linked_order=$PWD/target/release-static/startup-order-$(sha256sum "$order" | cut -c1-16).txt
  cp "$order" "$linked_order"
  link_args=(-C "link-arg=-Wl,--symbol-ordering-file=$linked_order" -C link-arg=-Wl,--no-warn-symbol-ordering)
  # Relative relocations packed (DT_RELR): 24,000 of them took 575 KiB as RELA entries, which
  # the start-up code reads whole and a long-running agent then keeps resident. The C
  # library's start-up code, linked into the binary, applies them; glibc has done so since
  # 2.36, so an older build host keeps RELA.
  glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')
  if [ -n "$glibc" ] && printf '2.36\n%s\n' "$glibc" | sort -V -C; then
    link_args+=(-C link-arg=-Wl,-z,pack-relative-relocs)
  fi
fi
# Its own target folder: RUSTFLAGS differ from the test builds', which must not be rebuilt.
RUSTFLAGS="${RUSTFLAGS:-} $flags" CARGO_PROFILE_RELEASE_STRIP=none \
  cargo rustc --release --locked -p freshtoken-cli --bin freshtoken \
  --target "$target" --target-dir target/release-static -- "${link_args[@]}"
bin=target/release-static/$target/release/freshtoken
if [ ${#link_args[@]} -gt 0 ]; then
  placed=$(nm --defined-only "$bin" | awk '{print $3}' | LC_ALL=C sort -u |
    LC_ALL=C comm -12 - <(LC_ALL=C sort -u "$order") | wc -l)
  echo "== start-up order: $placed of $(wc -l <"$order") listed functions placed (scripts/startup-order.sh renews the list)"
fi

# Static, with no program interpreter: it starts where no ld.so is.
if readelf -l "$bin" 2>/dev/null | grep -q "Requesting program interpreter"; then
  echo "release: $bin is dynamically linked" >&2
  exit 1
fi

rm -rf "$out"
mkdir -p "$out/man/man1" "$out/completions"
strip -o "$out/freshtoken" "$bin"
"$out/freshtoken" man-pages "$out/man/man1"
"$out/freshtoken" completions bash >"$out/completions/freshtoken.bash"
"$out/freshtoken" completions zsh >"$out/completions/_freshtoken"
"$out/freshtoken" completions fish >"$out/completions/freshtoken.fish"
(cd "$out" && find . -type f ! -name SHA256SUMS | sed 's|^\./||' | LC_ALL=C sort | xargs sha256sum >SHA256SUMS)
echo "== $out: $("$out/freshtoken" --version), $(du -h "$out/freshtoken" | cut -f1)"
