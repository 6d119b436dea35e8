#ifndef SCISTREAM_DIAG_H
#define SCISTREAM_DIAG_H
#include <stdint.h>

/* A TCP socket in LISTEN state, as the kernel's sock_diag reports it. */
struct scistream_listener {
    uint8_t address[16];  /* network order: 4 bytes for IPv4, 16 for IPv6 */
    uint16_t port;        /* host order */
    uint32_t inode;       /* the socket's inode: /proc/<pid>/fd links read "socket:[inode]" */
};

/* Asks the kernel (netlink NETLINK_SOCK_DIAG, inet_diag_req_v2) for the TCP sockets of `family`
 * (AF_INET or AF_INET6) that are in LISTEN state and whose local port is in [low, high]: the state
 * and the ports are filtered in the kernel (idiag_states and a bytecode filter), so the cost does
 * not grow with the machine's other sockets (TIME_WAIT, established).
 *
 * Writes at most `capacity` entries to `out` and returns how many sockets matched (more than
 * `capacity` if the array was too small), or -errno. */
int scistream_tcp_listeners(int family, uint16_t low, uint16_t high, struct scistream_listener *out, int capacity);
#endif
