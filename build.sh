#!/usr/bin/env bash
# build.sh: static, stripped, version-stamped release binaries.
#
#   ./build.sh                    # every target into dist/
#   ./build.sh linux/mipsle       # some of them
#   VERSION=1.2.3 OUT=/tmp/w ./build.sh
#
# The version defaults to main.go's, plus the commit (git describe). Each
# binary is CGO_ENABLED=0, -trimpath, -ldflags "-s -w -X main.version=...",
# and two things keep it small for routers (linux/amd64 sizes, Go 1.26):
#  - -tags nethttpomithttp2: WebSocket needs HTTP/1.1 only; net/http's
#    HTTP/2 would add 377 KB.
#  - no inlining outside the packages that run per frame or per system
#    call (wperf itself, runtime, internal/..., net, syscall, time, sync):
#    the handshakes, JSON, reports and crypto/tls's record layer (one call
#    per 16 KiB) lose nothing that shows, and the binary 460 KB.
# Names are wperf-OS-ARCH[VARIANT].
set -euo pipefail
cd "$(dirname "$0")"

OUT=${OUT:-dist}
base=$(sed -n 's/^\tversion *= *"\(.*\)"/\1/p' main.go | head -1)
VERSION=${VERSION:-$base-$(git describe --always --dirty 2>/dev/null || echo unknown)}
TAGS=${TAGS:-nethttpomithttp2}
GCFLAGS=(-gcflags=all=-l -gcflags=wperf= -gcflags=runtime= -gcflags=internal/...=
	-gcflags=net= -gcflags=syscall= -gcflags=time= -gcflags=sync/...=)

# OS/ARCH[/VARIANT]: VARIANT is GOARM for arm, GOMIPS for mips and mipsle
# (softfloat: most router SoCs have no FPU).
all=(
	linux/amd64 linux/386 linux/arm64
	linux/arm/5 linux/arm/6 linux/arm/7
	linux/mips/softfloat linux/mipsle/softfloat linux/mips64le linux/riscv64
	windows/amd64 darwin/amd64 darwin/arm64 freebsd/amd64
)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

mkdir -p "$OUT"
printf '%-34s %10s\n' "wperf $VERSION" bytes
for t in "${targets[@]}"; do
	IFS=/ read -r os arch variant <<<"$t"
	env=(CGO_ENABLED=0 GOOS="$os" GOARCH="$arch")
	name=wperf-$os-$arch
	case $arch in
	arm) env+=(GOARM="${variant:-7}"); name+=v${variant:-7} ;;
	mips | mipsle) env+=(GOMIPS="${variant:-softfloat}") ;;
	esac
	[ "$os" = windows ] && name+=.exe
	env "${env[@]}" go build -trimpath -tags "$TAGS" "${GCFLAGS[@]}" \
		-ldflags "-s -w -X main.version=$VERSION" -o "$OUT/$name" .
	printf '%-34s %10d\n' "$name" "$(stat -c %s "$OUT/$name" 2>/dev/null || stat -f %z "$OUT/$name")"
done
