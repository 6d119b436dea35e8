#ifndef SCISTREAM_COPENSSL_SHIM_H
#define SCISTREAM_COPENSSL_SHIM_H
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include "shim_dataplane.h"

/* OpenSSL macros are not visible to Swift: wrap the ones we use. */
static inline long scistream_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return SSL_CTX_set_min_proto_version(ctx, version);
}
static inline long scistream_SSL_set_tlsext_host_name(SSL *ssl, const char *name) {
    return SSL_set_tlsext_host_name(ssl, name);
}
static inline long scistream_SSL_CTX_set_session_cache_off(SSL_CTX *ctx) {
    return SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
}
static inline long scistream_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_mode(ctx, mode);
}
static inline long scistream_SSL_CTX_add0_chain_cert(SSL_CTX *ctx, X509 *cert) {
    return SSL_CTX_add0_chain_cert(ctx, cert);
}
static inline uint64_t scistream_SSL_OP_NO_RENEGOTIATION(void) {
    return SSL_OP_NO_RENEGOTIATION;
}
/* Memory BIOs: what an empty read returns (-1: "retry", so SSL asks for more bytes). */
static inline long scistream_BIO_set_mem_eof_return(BIO *bio, int value) {
    return BIO_set_mem_eof_return(bio, value);
}
/* Error codes: library and reason of an ERR_get_error value. */
static inline int scistream_ERR_GET_LIB(unsigned long code) {
    return ERR_GET_LIB(code);
}
static inline int scistream_ERR_GET_REASON(unsigned long code) {
    return ERR_GET_REASON(code);
}
/* Stacks are macros over OPENSSL_sk_*: typed accessors for the two we walk. */
static inline int scistream_sk_X509_num(const STACK_OF(X509) *stack) {
    return sk_X509_num(stack);
}
static inline X509 *scistream_sk_X509_value(const STACK_OF(X509) *stack, int index) {
    return sk_X509_value(stack, index);
}
static inline int scistream_sk_GENERAL_NAME_num(const GENERAL_NAMES *names) {
    return sk_GENERAL_NAME_num(names);
}
static inline const GENERAL_NAME *scistream_sk_GENERAL_NAME_value(const GENERAL_NAMES *names, int index) {
    return sk_GENERAL_NAME_value(names, index);
}
/* The subjectAltName extension of a certificate, or NULL; free with GENERAL_NAMES_free. */
static inline GENERAL_NAMES *scistream_X509_subject_alt_names(const X509 *cert) {
    return (GENERAL_NAMES *)X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
}
#endif
