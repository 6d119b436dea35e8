#define _GNU_SOURCE
#include <stddef.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include "scistream_net.h"

int scistream_accept4_nonblock_cloexec(int fd) {
    return accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int scistream_eventfd_nonblock_cloexec(void) {
    return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}
