#define _GNU_SOURCE
#include <stddef.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <linux/filter.h>
#include "scistream_net.h"

int scistream_accept4_nonblock_cloexec(int fd) {
    return accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int scistream_eventfd_nonblock_cloexec(void) {
    return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

int scistream_attach_filter(int fd, const uint16_t *code, const uint8_t *jt, const uint8_t *jf, const uint32_t *k,
                            unsigned short count) {
    struct sock_filter program[count > 0 ? count : 1];
    for (unsigned short index = 0; index < count; index++) {
        program[index].code = code[index];
        program[index].jt = jt[index];
        program[index].jf = jf[index];
        program[index].k = k[index];
    }
    struct sock_fprog filter = { .len = count, .filter = program };
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &filter, sizeof(filter));
}
