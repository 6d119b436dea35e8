#ifndef SCISTREAM_COPENSSL_SHIM_DATAPLANE_H
#define SCISTREAM_COPENSSL_SHIM_DATAPLANE_H
/* Wrappers the data plane's key derivation needs (owned by the data-plane code). */
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/x509v3.h>

/* HKDF-SHA256 (RFC 5869, extract then expand) through EVP_KDF. Returns 1 on success. The
 * OSSL_PARAM array is built here because its constructors want pointers that outlive the call. */
static inline int scistream_hkdf_sha256(const unsigned char *ikm, size_t ikm_len,
                                        const unsigned char *salt, size_t salt_len,
                                        const unsigned char *info, size_t info_len,
                                        unsigned char *out, size_t out_len) {
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    if (kdf == NULL) {
        return 0;
    }
    EVP_KDF_CTX *ctx = EVP_KDF_CTX_new(kdf);
    EVP_KDF_free(kdf);
    if (ctx == NULL) {
        return 0;
    }
    OSSL_PARAM params[5];
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len);
    params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
    params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, info_len);
    params[4] = OSSL_PARAM_construct_end();
    int ok = EVP_KDF_derive(ctx, out, out_len, params) == 1;
    EVP_KDF_CTX_free(ctx);
    return ok;
}

/* X509V3_set_ctx_nodb is a macro. */
static inline void scistream_X509V3_set_ctx_nodb(X509V3_CTX *ctx) {
    X509V3_set_ctx_nodb(ctx);
}

/* BIO_get_mem_data is a macro: the bytes of a memory BIO (not NUL-terminated). */
static inline long scistream_BIO_get_mem_data(BIO *bio, char **data) {
    return BIO_get_mem_data(bio, data);
}

/* MBSTRING_ASC is a compound macro. */
static inline int scistream_MBSTRING_ASC(void) {
    return MBSTRING_ASC;
}
#endif
