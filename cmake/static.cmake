# YODEL_STATIC: a fully static, stripped `yodel` program for the container image (contrib/container)
# and for copying to machines without libuv or OpenSSL 3. Built alone (`--target yodel`): the tests
# and examples are not configured, as they are in every other build.
#
# Included before the pkg-config checks, so that their imported targets name archives:
# - libuv: Debian's archive is libuv_a.a, which only libuv-static.pc names (-luv_a);
# - OpenSSL: libssl.a and libcrypto.a, found instead of the .so by preferring the .a suffix.
# Then, once src/cli has defined the program, it is linked with -static, its unused sections
# dropped and its symbols stripped (about half the size).
#
# Name resolution: glibc 2.34+ has its files and dns NSS modules inside libc.a, so the static
# program resolves /etc/hosts names and DNS names with no libnss_*.so and no nsswitch.conf
# (tests/ops/test_container.py checks both in the image). The linker's warning that getaddrinfo
# "requires at runtime the shared libraries from the glibc version used for linking" concerns only
# the other modules (mdns, myhostname, systemd...), which a container never has.
set(YODEL_UV_MODULE libuv-static)
set(CMAKE_FIND_LIBRARY_SUFFIXES .a)
add_compile_options(-ffunction-sections -fdata-sections)

function(yodel_link_static)
    target_link_options(yodel PRIVATE -static -Wl,--gc-sections -s)
endfunction()
cmake_language(DEFER DIRECTORY ${PROJECT_SOURCE_DIR} CALL yodel_link_static)
