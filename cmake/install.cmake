# Install rules beyond the binary, the libraries and the header (those are in src/): man pages,
# systemd units, bash completion and the pkg-config file.
#
# The files that name install paths are generated at install time, not at configure time, so
# that `cmake --install build --prefix P` writes P into them; DESTDIR (from the environment)
# is prepended to where files go but never written into them, as packagers expect.
include(GNUInstallDirs)

set(YODEL_GENERATED ${PROJECT_BINARY_DIR}/install-generated)

install(FILES ${PROJECT_SOURCE_DIR}/man/yodel.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${PROJECT_SOURCE_DIR}/man/libyodel.3 DESTINATION ${CMAKE_INSTALL_MANDIR}/man3)

install(FILES ${PROJECT_SOURCE_DIR}/contrib/yodel.bash-completion
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions
        RENAME yodel)

# `pkg-config --static --libs yodel` must name libuv's static archive for `cc -static`: Debian's
# is libuv_a.a, which libuv-static.pc names (-luv_a) and libuv.pc does not (-luv finds only the
# shared library). Use libuv-static where the system has it.
pkg_check_modules(YODEL_UV_STATIC QUIET libuv-static>=1.44)
if(YODEL_UV_STATIC_FOUND)
    set(YODEL_PC_REQUIRES_PRIVATE "libuv-static >= 1.44, openssl >= 3.0")
else()
    set(YODEL_PC_REQUIRES_PRIVATE "libuv >= 1.44, openssl >= 3.0")
endif()

# The libdir (CMAKE_INSTALL_LIBDIR) is chosen at configure time for CMAKE_INSTALL_PREFIX:
# GNUInstallDirs gives lib/<multiarch> for /usr on Debian and lib elsewhere. `make install
# PREFIX=...` configures for its prefix; `cmake --install --prefix` to or from /usr cannot change
# the libdir, so it says so.
# CMAKE_INSTALL_PREFIX below is escaped: it is read when the install runs, so --prefix counts.
install(CODE "
    if(NOT \"\${CMAKE_INSTALL_PREFIX}\" STREQUAL \"${CMAKE_INSTALL_PREFIX}\" AND
       (\"\${CMAKE_INSTALL_PREFIX}\" MATCHES \"^/usr/?$\" OR
        \"${CMAKE_INSTALL_PREFIX}\" MATCHES \"^/usr/?$\"))
        message(WARNING \"yodel: installing into \${CMAKE_INSTALL_PREFIX} with the libdir \"
                \"chosen for ${CMAKE_INSTALL_PREFIX} (${CMAKE_INSTALL_LIBDIR}); configure with \"
                \"-DCMAKE_INSTALL_PREFIX=\${CMAKE_INSTALL_PREFIX} (make install PREFIX=... does) \"
                \"for the libdir of that prefix\")
    endif()
    set(PROJECT_VERSION \"${PROJECT_VERSION}\")
    set(YODEL_PC_REQUIRES_PRIVATE \"${YODEL_PC_REQUIRES_PRIVATE}\")
    set(CMAKE_INSTALL_LIBDIR \"${CMAKE_INSTALL_LIBDIR}\")
    set(CMAKE_INSTALL_INCLUDEDIR \"${CMAKE_INSTALL_INCLUDEDIR}\")
    set(YODEL_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
    if(IS_ABSOLUTE \"${CMAKE_INSTALL_BINDIR}\")
        set(YODEL_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
    else()
        set(YODEL_BINDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}\")
    endif()
    configure_file(\"${PROJECT_SOURCE_DIR}/contrib/yodel.pc.in\"
                   \"${YODEL_GENERATED}/yodel.pc\" @ONLY)
    configure_file(\"${PROJECT_SOURCE_DIR}/contrib/yodel.service.in\"
                   \"${YODEL_GENERATED}/yodel.service\" @ONLY)
")
install(FILES ${YODEL_GENERATED}/yodel.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
# lib/systemd/system under the prefix: /usr/lib/systemd/system for --prefix /usr, and
# /usr/local/lib/systemd/system (which systemd also reads) for the default prefix.
install(FILES ${YODEL_GENERATED}/yodel.service ${PROJECT_SOURCE_DIR}/contrib/yodel.socket
        DESTINATION lib/systemd/system)
