#ifndef SCISTREAM_NET_H
#define SCISTREAM_NET_H
/* GNU extensions that Glibc's Swift overlay does not show without _GNU_SOURCE. */
int scistream_accept4_nonblock_cloexec(int fd);
int scistream_eventfd_nonblock_cloexec(void);
#endif
