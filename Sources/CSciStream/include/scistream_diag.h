#ifndef SCISTREAM_DIAG_H
#define SCISTREAM_DIAG_H
#include <stdint.h>

/* A TCP socket as the kernel's sock_diag reports it. */
struct scistream_tcp_socket {
    uint8_t address[16];  /* network order: 4 bytes for IPv4, 16 for IPv6 */
    uint16_t port;        /* host order */
    uint32_t inode;       /* the socket's inode: /proc/<pid>/fd links read "socket:[inode]" */
    uint8_t state;        /* TCP_ESTABLISHED (1), TCP_LISTEN (10), ... */
};

/* Asks the kernel (netlink NETLINK_SOCK_DIAG, inet_diag_req_v2) for the TCP sockets of `family`
 * (AF_INET or AF_INET6) whose state is in `states` (a mask of 1 << TCP_LISTEN, 1 << TCP_ESTABLISHED...)
 * and whose local port is in [low, high]: states and ports are filtered in the kernel (idiag_states
 * and a bytecode filter), so the cost does not grow with the machine's other sockets (a LISTEN-only
 * query does not even walk the connection table, where TIME_WAIT sockets are).
 *
 * Writes at most `capacity` entries to `out` and returns how many sockets matched (more than
 * `capacity` if the array was too small), or -errno. */
int scistream_tcp_sockets(int family, uint32_t states, uint16_t low, uint16_t high, struct scistream_tcp_socket *out, int capacity);
#endif
