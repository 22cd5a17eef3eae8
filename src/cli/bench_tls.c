/*
 * yodel bench over TLS: the options' checks, and the one client configuration (yd_tls) that
 * every connection of every thread shares. The connections themselves differ only in how
 * they connect (yd_conn_connect_tls, bench_conn.c): on_data gets plaintext as on a plain
 * connection, so the measured path is the same code.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"
#include "yodel.h"

/* The options that only make sense with TLS, and whether each was given. */
static const char *tls_only_option(const config *cfg)
{
    if (cfg->ca_file != NULL)
        return "--ca";
    if (cfg->insecure)
        return "--insecure";
    if (cfg->sni != NULL)
        return "--sni";
    if (cfg->cert_file != NULL)
        return "--cert";
    if (cfg->key_file != NULL)
        return "--key";
    if (cfg->resume)
        return "--resume";
    return NULL;
}

/* A file named on the command line that cannot be read, or is a directory (which OpenSSL
 * would call "no certificate or crl found" or "PEM lib"), is a bad option value. */
static void check_readable(const char *opt, const char *file)
{
    struct stat st;
    if (file != NULL && access(file, R_OK) != 0)
        usage_error("bench", "%s: cannot read %s: %s", opt, file, strerror(errno));
    if (file != NULL && stat(file, &st) == 0 && S_ISDIR(st.st_mode))
        usage_error("bench", "%s: %s is a directory (a PEM file is expected)", opt, file);
}

void tls_check_options(const config *cfg)
{
    const char *opt = tls_only_option(cfg);
    if (!cfg->tls) {
        if (opt != NULL)
            usage_error("bench", "%s: only with TLS (a tls:// address or --tls)", opt);
        return;
    }
    if (cfg->udp)
        usage_error("bench", "--tls: not over UDP (TLS runs over TCP or a Unix socket)");
    if (cfg->insecure && cfg->ca_file != NULL)
        usage_error("bench", "--ca with --insecure: verify with the CA, or not at all");
    if (cfg->resume && cfg->reconnect_every == 0)
        usage_error("bench", "--resume: only with --reconnect-every (a new handshake to resume)");
    if (cfg->key_file != NULL && cfg->cert_file == NULL)
        usage_error("bench", "--key: without --cert (the client certificate it belongs to)");
    check_readable("--ca", cfg->ca_file);
    check_readable("--cert", cfg->cert_file);
    check_readable("--key", cfg->key_file);
}

void tls_setup(bench *b)
{
    const config *cfg = &b->cfg;
    if (!cfg->tls)
        return;
    yd_tls_options options = {
        .cert_file = cfg->cert_file,
        .key_file = cfg->key_file,
        .ca_file = cfg->ca_file,
        .insecure = cfg->insecure,
        .server_name = cfg->sni,
        .resume = cfg->resume,
    };
    char err[256] = "";
    int rc = yd_tls_client_new(&options, &b->tls, err, sizeof err);
    if (rc == -ENOMEM) {
        fprintf(stderr, "yodel bench: out of memory\n");
        exit(EXIT_RUNTIME);
    }
    if (rc < 0)
        usage_error("bench", "TLS: %s", err[0] ? err : yd_strerror(rc));
    if (cfg->insecure)
        fprintf(stderr, "yodel bench: --insecure: the server's certificate is not verified\n");
}

/* Why a handshake failed, in OpenSSL's words: the first one any thread saw (a static string). */
static _Atomic(const char *) handshake_reason;

void tls_note_failure(const char *reason)
{
    const char *none = NULL;
    atomic_compare_exchange_strong(&handshake_reason, &none, reason);
}

const char *tls_connect_error(const bench *b, int status)
{
    static char why[600];
    const config *cfg = &b->cfg;
    if (b->tls == NULL || status != -EPROTO)
        return yd_strerror(status);
    const char *reason = atomic_load(&handshake_reason); /* OpenSSL's words, if it said */
    if (cfg->insecure) {
        snprintf(why, sizeof why, "the TLS handshake failed (no TLS 1.2 or 1.3 server there?)%s%s",
                 reason ? ": " : "", reason ? reason : "");
        return why;
    }
    const char *name = cfg->sni ? cfg->sni : b->target[0].host;
    /* The library does not say which: the certificate, or no TLS server at all. */
    snprintf(why, sizeof why,
             "the TLS handshake failed: the server's certificate is not signed by %s%s or is "
             "not for '%s' (--sni), or no TLS server is there (--insecure skips the check)%s%s",
             cfg->ca_file ? "a CA in " : "a CA the system trusts (--ca)",
             cfg->ca_file ? cfg->ca_file : "", name, reason ? ": " : "", reason ? reason : "");
    return why;
}
