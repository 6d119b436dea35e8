#ifndef SCISTREAM_NET_H
#define SCISTREAM_NET_H
/* GNU extensions that Glibc's Swift overlay does not show without _GNU_SOURCE. */
int scistream_accept4_nonblock_cloexec(int fd);
int scistream_eventfd_nonblock_cloexec(void);
#include <stdint.h>
/* epoll (the reactor): the Glibc module does not include it. */
#include <sys/epoll.h>
/* setsockopt(SO_ATTACH_FILTER) with a classic BPF program of `count` instructions given as four
 * parallel arrays (code, jt, jf, k). Returns 0, or -1 with errno set. */
int scistream_attach_filter(int fd, const uint16_t *code, const uint8_t *jt, const uint8_t *jf, const uint32_t *k,
                            unsigned short count);
#endif
