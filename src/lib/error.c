/* Error names and the library's version. */
#include <errno.h>
#include <string.h>

#include "internal.h"

const char *yd_version(void)
{
    return YD_VERSION;
}

const char *yd_strerror(int code)
{
    if (code == 0)
        return "success";
    if (code == -EMSGSIZE)
        return "line too long";
    if (code == YD_ERESOLVE)
        return "name does not resolve";
    /* libuv errors are negated errno values on Unix, so uv_strerror names both. */
    return uv_strerror(code);
}

enum yd_error_kind yd__error_kind_of(int status)
{
    switch (status) {
    case -ECONNRESET:
    case -EPIPE:
    case -ECONNABORTED:
        return YD_ERR_RESET;
    case -EMSGSIZE:
        return YD_ERR_LINE_TOO_LONG;
    case -ETIMEDOUT:
        return YD_ERR_IDLE_TIMEOUT;
    default:
        return YD_ERR_IO;
    }
}

static const char *const kind_names[YD_ERR__COUNT] = {
    [YD_ERR_ACCEPT] = "accept",
    [YD_ERR_RESET] = "reset",
    [YD_ERR_IO] = "io",
    [YD_ERR_LINE_TOO_LONG] = "line_too_long",
    [YD_ERR_IDLE_TIMEOUT] = "idle_timeout",
    [YD_ERR_UDP_SEND] = "udp_send",
    [YD_ERR_UDP_LOW_PORT] = "udp_low_port",
    [YD_ERR_DRAIN_TIMEOUT] = "drain_timeout",
    [YD_ERR_TLS_HANDSHAKE] = "tls_handshake",
    [YD_ERR_PROXY_HEADER] = "proxy_header",
    [YD_ERR_INJECTED_DROP] = "injected_drop",
    [YD_ERR_INJECTED_RESET] = "injected_reset",
};

const char *yd_error_kind_name(enum yd_error_kind kind)
{
    if ((unsigned)kind >= YD_ERR__COUNT)
        return "unknown";
    return kind_names[kind];
}
