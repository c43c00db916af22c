#!/usr/bin/env bash
# Smoke test of the probe without a VMM: bare QEMU (TCG) runs the image from a 64 KiB stub
# "BIOS" whose reset vector jumps to 0000:8000, as a VMM would start the vCPU. Real mode ->
# long mode, the IDT, the UART and the parameter block work there; the CPUID check then fails
# as it must (QEMU's TCG hypervisor leaf is "TCGTCGTCGTCG", not "SluiceSluice"), so the run
# ends with status 3 on isa-debug-exit (QEMU exit code (3 << 1) | 1 = 7).
# Usage: ./smoke-qemu.sh   (needs qemu-system-x86_64; builds into $CARGO_TARGET_DIR)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
target=${CARGO_TARGET_DIR:-/tmp/target-guest}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

(cd "$here" && CARGO_TARGET_DIR="$target" cargo build --release --target x86_64-unknown-none)
image="$target/x86_64-unknown-none/release/guest-probe"

# Zeros, with JMP FAR 0000:8000 (EA 00 80 00 00) at the reset vector, offset 0xfff0.
head -c 65520 /dev/zero > "$work/bios.bin"
printf '\xea\x00\x80\x00\x00' >> "$work/bios.bin"
head -c 11 /dev/zero >> "$work/bios.bin"

set +e
timeout 60 qemu-system-x86_64 -accel tcg -machine q35 -cpu qemu64 -m 64 \
    -bios "$work/bios.bin" -device loader,file="$image" \
    -display none -vga none -monitor none -no-reboot -nic none \
    -serial file:"$work/serial.txt" -device isa-debug-exit,iobase=0xf4,iosize=0x04
status=$?
set -e
cat "$work/serial.txt"

fail() { echo "smoke-qemu: FAILED: $*" >&2; exit 1; }
[ "$status" -eq 7 ] || fail "QEMU exit code $status, expected 7 (probe status 3, cpuid)"
for line in "probe: hello from long mode" "probe: ok long-mode" "probe: ok uart" \
    'probe: command line "", mode checks' 'probe: FAIL cpuid: CPUID.40000000:EBX'; do
    grep -qF "$line" "$work/serial.txt" || fail "missing output: $line"
done
echo "smoke-qemu: ok (trampoline, descriptor tables, UART and parameters work; cpuid fails as expected without the VMM)"
