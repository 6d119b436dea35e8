// SciStreamTLS
