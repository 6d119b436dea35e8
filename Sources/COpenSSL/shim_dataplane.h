#ifndef SCISTREAM_COPENSSL_SHIM_DATAPLANE_H
#define SCISTREAM_COPENSSL_SHIM_DATAPLANE_H
/* Wrappers the data plane's key derivation needs (owned by the data-plane code). */
#endif
