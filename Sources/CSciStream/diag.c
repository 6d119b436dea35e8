#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/inet_diag.h>
#include "scistream_diag.h"

/* The request: header, inet_diag_req_v2, then one attribute holding the bytecode
 * "sport >= low && sport <= high". An op that is false jumps 4 bytes past the end of the program,
 * which the kernel reads as "reject"; running off the end exactly means "accept". */
struct diag_request {
    struct nlmsghdr header;
    struct inet_diag_req_v2 request;
    struct nlattr attribute;
    struct inet_diag_bc_op program[4];
};

int scistream_tcp_sockets(int family, uint32_t states, uint16_t low, uint16_t high, struct scistream_tcp_socket *out, int capacity) {
    if (family != AF_INET && family != AF_INET6) return -EAFNOSUPPORT;
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) return -errno;

    struct diag_request message;
    memset(&message, 0, sizeof message);
    message.header.nlmsg_len = sizeof message;
    message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    message.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    message.request.sdiag_family = (uint8_t)family;
    message.request.sdiag_protocol = IPPROTO_TCP;
    message.request.idiag_states = states;
    message.attribute.nla_len = sizeof message.attribute + sizeof message.program;
    message.attribute.nla_type = INET_DIAG_REQ_BYTECODE;
    /* op 0 at offset 0 (16 bytes left), op 1 at offset 8 (8 bytes left) */
    message.program[0] = (struct inet_diag_bc_op){ .code = INET_DIAG_BC_S_GE, .yes = 8, .no = 16 + 4 };
    message.program[1] = (struct inet_diag_bc_op){ .code = 0, .yes = 0, .no = low };
    message.program[2] = (struct inet_diag_bc_op){ .code = INET_DIAG_BC_S_LE, .yes = 8, .no = 8 + 4 };
    message.program[3] = (struct inet_diag_bc_op){ .code = 0, .yes = 0, .no = high };

    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
    struct iovec iov = { .iov_base = &message, .iov_len = sizeof message };
    struct msghdr header = { .msg_name = &kernel, .msg_namelen = sizeof kernel, .msg_iov = &iov, .msg_iovlen = 1 };
    ssize_t sent;
    do { sent = sendmsg(fd, &header, 0); } while (sent < 0 && errno == EINTR);
    if (sent < 0) { int error = errno; close(fd); return -error; }

    /* Aligned for struct nlmsghdr; one datagram holds many messages. */
    long buffer[8192 / sizeof(long)];
    int count = 0;
    for (;;) {
        ssize_t received;
        do { received = recv(fd, buffer, sizeof buffer, 0); } while (received < 0 && errno == EINTR);
        if (received < 0) { int error = errno; close(fd); return -error; }
        if (received == 0) { close(fd); return -EIO; }
        int length = (int)received;
        for (struct nlmsghdr *reply = (struct nlmsghdr *)buffer; NLMSG_OK(reply, length); reply = NLMSG_NEXT(reply, length)) {
            if (reply->nlmsg_type == NLMSG_DONE) { close(fd); return count; }
            if (reply->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *error = NLMSG_DATA(reply);
                int code = reply->nlmsg_len >= NLMSG_LENGTH(sizeof *error) ? -error->error : EIO;
                close(fd);
                return -(code > 0 ? code : EIO);
            }
            if (reply->nlmsg_type != SOCK_DIAG_BY_FAMILY || reply->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg))) continue;
            const struct inet_diag_msg *socket_info = NLMSG_DATA(reply);
            if (count < capacity) {
                struct scistream_tcp_socket *entry = &out[count];
                memset(entry, 0, sizeof *entry);
                memcpy(entry->address, socket_info->id.idiag_src, socket_info->idiag_family == AF_INET6 ? 16 : 4);
                entry->port = ntohs(socket_info->id.idiag_sport);
                entry->inode = socket_info->idiag_inode;
                entry->state = socket_info->idiag_state;
            }
            count++;
        }
    }
}
