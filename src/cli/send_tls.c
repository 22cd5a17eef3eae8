/*
 * yodel send over TLS (tls:// addresses, --tls): the client configuration made from --ca,
 * --insecure, --sni, --cert and --key, and what a failed TLS connection tells the user. The
 * library says only -EPROTO for a failed handshake, whatever failed in it: the line says what
 * is most likely, from what the user asked for (verification or not, a client certificate or
 * not).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "send.h"
#include "yodel.h"

/* Room for the library's reason a configuration failed (a file and OpenSSL's words). */
#define TLS_ERR_BYTES 512

/* An option's file must be readable: said here, naming the option, before the library does
 * (whose words for a directory are OpenSSL's "no certificate or crl found" or "PEM lib"). */
static void check_file(const char *opt, const char *file)
{
    struct stat st;
    if (file != NULL && access(file, R_OK) < 0)
        usage_error("send", "%s: cannot read %s: %s", opt, file, strerror(errno));
    if (file != NULL && stat(file, &st) == 0 && S_ISDIR(st.st_mode))
        usage_error("send", "%s: %s is a directory (a PEM file is expected)", opt, file);
}

yd_tls *send_tls_new(const struct send_tls_options *o)
{
    check_file("--ca", o->ca_file);
    check_file("--cert", o->cert_file);
    check_file("--key", o->key_file);
    yd_tls_options options = {
        .ca_file = o->ca_file,
        .cert_file = o->cert_file,
        .key_file = o->key_file,
        .server_name = o->server_name,
        .insecure = o->insecure,
        .handshake_timeout_ms = o->handshake_timeout_ms,
    };
    yd_tls *tls;
    char err[TLS_ERR_BYTES] = "";
    int rc = yd_tls_client_new(&options, &tls, err, sizeof err);
    if (rc < 0)
        usage_error("send", "TLS: %s", err[0] ? err : yd_strerror(rc));
    if (o->insecure)
        fprintf(stderr, "yodel send: --insecure: the server's certificate is not verified\n");
    return tls;
}

const char *send_tls_refusal_hint(const struct send_tls_options *o)
{
    return o->cert_file == NULL ? "does it require a client certificate? see --cert"
                                : "was the client certificate refused?";
}

/* Why the last handshake failed, in OpenSSL's words (yd_conn_tls_error), noted in on_close. */
static const char *handshake_reason;

void send_tls_note(const yd_conn *conn)
{
    if (yd_conn_tls_error(conn) != NULL)
        handshake_reason = yd_conn_tls_error(conn);
}

const char *send_tls_failure(const struct send_tls_options *o, int status, int handshaken,
                             int answered)
{
    static char line[200];
    /* The handshake's deadline (--timeout) is armed once the TCP connect is done: its -ETIMEDOUT
     * is no connect timing out. (The kernel's own connect timeout, after minutes of SYN retries,
     * reads the same: the library tells no moment between the two.) */
    if (!handshaken && status == -ETIMEDOUT)
        return "TLS handshake timed out";
    if (!handshaken && status == -EPROTO) {
        const char *guess = o->insecure ? "TLS handshake failed (not a TLS server?)"
                                        : "TLS handshake failed (certificate not verified?)";
        if (handshake_reason == NULL)
            return guess;
        snprintf(line, sizeof line, "%s: %s", guess, handshake_reason); /* OpenSSL's words */
        return line;
    }
    /* A session that failed after the handshake for a reason OpenSSL named (a bad record): its
     * words; a certificate the server refused is the guess below, with its hint. */
    if (handshaken && status == -EPROTO && handshake_reason != NULL &&
        strstr(handshake_reason, "certificate") == NULL) {
        snprintf(line, sizeof line, "TLS error: %s", handshake_reason);
        return line;
    }
    /* TLS 1.3: the client's handshake is done before the server has checked the client's
     * certificate; a refusal comes as an alert (or a reset) in place of the first reply. */
    if (!handshaken || answered || (status != -EPROTO && status != -EPIPE && status != -ECONNRESET))
        return yd_strerror(status);
    snprintf(line, sizeof line, "%s: the server ended the TLS session before answering (%s)",
             status == -EPROTO ? "TLS error" : yd_strerror(status), send_tls_refusal_hint(o));
    return line;
}
