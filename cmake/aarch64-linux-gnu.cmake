# Toolchain file for arm64 (aarch64) with Debian's cross compiler and the arm64 libraries of the
# same Debian release (multiarch): `dpkg --add-architecture arm64` and
# `apt-get install gcc-aarch64-linux-gnu libuv1-dev:arm64 libssl-dev:arm64` (scripts/image does it).
# Used with -DYODEL_STATIC=ON by scripts/image --arch arm64; the result runs under qemu-aarch64.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
# pkg-config must read the arm64 .pc files only: they name /usr/lib/aarch64-linux-gnu.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64-static)
